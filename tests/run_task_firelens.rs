//! Root integration tests of FireLens: a task with a log router (`firelensConfiguration`)
//! and an application container with the `awsfirelens` log driver. The router image holds
//! a minimal Fluent forward receiver (tests/bin/fluent_receiver.rs, with the host's dynamic
//! loader and the libraries `ldd` lists) at the AWS for Fluent Bit image's binary path: no
//! Fluent Bit or Fluentd installs from Debian, PyPI or npm here. It listens where the
//! generated configuration has Fluent Bit listen and prints each record it receives, so
//! the test reads, from inside the router, what the application's lines became.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Entry, Layer, busybox_all_applets};
use common::leaks::assert_no_leaks;
use common::registry::Registry;
use common::services::{Server, aws};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ROUTER_IMAGE: &str = "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable";

/// The receiver and what it needs to run, as image entries at the paths they have here.
fn receiver_entries() -> Vec<Entry> {
    let bin = env!("CARGO_BIN_EXE_fluent-receiver");
    let mut v = vec![
        Entry::dir("fluent-bit"),
        Entry::dir("fluent-bit/bin"),
        Entry::dir("fluent-bit/etc"),
        Entry::file("fluent-bit/bin/fluent-bit", std::fs::read(bin).unwrap()).mode(0o755),
        Entry::dir("var"),
        Entry::dir("var/run"),
        Entry::dir("tmp").mode(0o1777),
        Entry::dir("etc"),
        Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
    ];
    let ldd = std::process::Command::new("ldd").arg(bin).output().unwrap();
    assert!(ldd.status.success(), "ldd {bin}");
    let mut dirs = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let l = line.trim();
        let path = match l.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => l,
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if !path.starts_with('/') {
            continue; // linux-vdso
        }
        let rel = path.trim_start_matches('/');
        let mut parent = std::path::Path::new(rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
        v.push(Entry::file(rel, std::fs::read(path).unwrap()).mode(0o755));
    }
    for d in dirs.into_iter().rev() {
        v.insert(0, Entry::dir(&d));
    }
    v
}

struct Env {
    mf: Mf,
    _reg: Registry,
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(Layer::new(
            Compression::Gzip,
            busybox_all_applets("firelens-app"),
        ));
        let work = tempfile::Builder::new()
            .prefix("mf-firelens-img-")
            .tempdir()
            .unwrap();
        common::push_image(
            &reg,
            work.path(),
            "aws-observability/aws-for-fluent-bit:stable",
            &[Layer::new(Compression::Gzip, receiver_entries())],
        );
        Env { mf, _reg: reg }
    }

    fn status(&self, id: &str) -> Value {
        self.mf.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
    }

    fn wait_stopped(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let t = self.status(id);
            if t["lastStatus"] == "STOPPED" {
                return t;
            }
            assert!(Instant::now() < deadline, "task {id} did not stop: {t:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The JSON lines container `name` printed (`minifargate logs`).
    fn json_lines(&self, id: &str, name: &str) -> Vec<Value> {
        let out = self.mf.run(&["logs", id, "--container", name]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(&l[l.find('{')?..]).ok())
            .collect()
    }
}

fn router(kind: &str, options: Value) -> Value {
    json!({
        "name": "log_router",
        "image": ROUTER_IMAGE,
        "essential": true,
        "entryPoint": ["/fluent-bit/bin/fluent-bit"],
        "memoryReservation": 50,
        // The receiver is pid 1 and has no SIGTERM handler.
        "stopTimeout": 2,
        "firelensConfiguration": {"type": kind, "options": options},
    })
}

impl Env {
    /// Runs `td` detached (with `extra` run-task flags) until it stops; its id, ARN and
    /// the stopped task.
    fn run(&self, family: &str, td: &Value, extra: &[&str]) -> (String, String, Value) {
        let td = self.mf.taskdef(family, &td.to_string());
        let mut args = vec!["run-task", "--task-definition", &td, "--detach"];
        args.extend_from_slice(extra);
        let v = self.mf.json(&args);
        assert_eq!(v["failures"], json!([]), "{v:#}");
        let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
        let id = arn.rsplit('/').next().unwrap().to_string();
        let task = self.wait_stopped(&id);
        (id, arn, task)
    }
}

#[test]
fn an_app_line_reaches_the_router_with_the_ecs_metadata_fields() {
    let env = Env::new();
    let td = json!({
        "family": "firelens-e2e",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            router("fluentbit", json!({"enable-ecs-log-metadata": "true"})),
            {
                "name": "app",
                "image": "public.ecr.aws/docker/library/busybox:1.36",
                "essential": true,
                "command": ["sh", "-c",
                    "echo hello-firelens; echo oops-firelens >&2; \
                     echo fluent=$FLUENT_HOST:$FLUENT_PORT; sleep 1"],
                "logConfiguration": {"logDriver": "awsfirelens", "options": {
                    "Name": "cloudwatch_logs", "region": "us-east-1",
                    "log_group_name": "/ecs/firelens-e2e", "auto_create_group": "true"},
                    "secretOptions": [{"name": "apikey", "valueFrom": "/firelens/apikey"}]},
            }
        ]
    });
    let secrets = env.mf.root.parent().unwrap().join("secrets.json");
    std::fs::write(&secrets, r#"{"/firelens/apikey": "s3cr3t-key"}"#).unwrap();
    let (id, arn, task) = env.run(
        "firelens-e2e",
        &td,
        &["--secrets-file", secrets.to_str().unwrap()],
    );
    let app = task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    assert_eq!(app["exitCode"], 0, "{task:#}");

    let lines = env.json_lines(&id, "log_router");
    // Seen from inside the router: the generated file where the agent mounts it, and the
    // socket where that file has Fluent Bit listen.
    let config = lines
        .iter()
        .find(|l| l["config_path"] == "/fluent-bit/etc/fluent-bit.conf")
        .unwrap_or_else(|| panic!("no config at /fluent-bit/etc/fluent-bit.conf: {lines:#?}"));
    let text = config["config"].as_str().unwrap();
    for want in [
        "[INPUT]\n    Name forward\n    Mem_Buf_Limit 25MB\n    unix_path /var/run/fluent.sock\n",
        "    Listen 127.0.0.1\n    Port 24224\n",
        "    Name record_modifier\n    Match *\n    Record ecs_cluster default\n",
        &format!("    Record ecs_task_arn {arn}\n    Record ecs_task_definition firelens-e2e:1\n"),
        "[OUTPUT]\n    Name cloudwatch_logs\n    Match app-firelens*\n    apikey ${apikey_1}\n    auto_create_group true\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let on_host = std::fs::read_to_string(
        env.mf
            .root
            .join("tasks")
            .join(&id)
            .join("firelens/config/fluent.conf"),
    )
    .unwrap();
    assert_eq!(text, on_host);
    assert!(
        lines
            .iter()
            .any(|l| l["listening"][0] == "/var/run/fluent.sock")
    );
    // The secret option's value is in the router's environment, as the variable its
    // configuration names (never in the file).
    let router_env = &lines.iter().find(|l| l.get("env").is_some()).unwrap()["env"];
    assert_eq!(router_env["apikey_1"], "s3cr3t-key", "{router_env:#}");
    assert!(!text.contains("s3cr3t-key"));

    let record = |log: &str| {
        lines
            .iter()
            .find(|l| l["record"]["log"] == log)
            .unwrap_or_else(|| panic!("{log:?} did not reach the router: {lines:#?}"))
            .clone()
    };
    let hello = record("hello-firelens");
    assert_eq!(hello["tag"], format!("app-firelens-{id}"));
    assert_eq!(hello["via"], "unix");
    assert!(hello["time"].as_f64().unwrap() > 1.7e9, "{hello}");
    let r = &hello["record"];
    assert_eq!(r["source"], "stdout");
    assert_eq!(r["container_name"], "app");
    assert_eq!(r["container_id"], format!("{id}-1"));
    assert_eq!(r["ecs_cluster"], "default");
    assert_eq!(r["ecs_task_arn"], arn.as_str());
    assert_eq!(r["ecs_task_definition"], "firelens-e2e:1");
    assert_eq!(record("oops-firelens")["record"]["source"], "stderr");
    // The agent's environment for an awsvpc task's routed container.
    record("fluent=127.0.0.1:24224");

    // The local copy stays: `minifargate logs` of the app shows its lines too.
    let out = env.mf.run(&["logs", &id, "--container", "app"]);
    let app_log = String::from_utf8_lossy(&out.stdout);
    assert!(app_log.contains("hello-firelens"), "{app_log}");
    // Nothing was dropped.
    let warnings = task.to_string();
    assert!(!warnings.contains("awsfirelens dropped"), "{task:#}");
    assert_no_leaks(&env.mf, &[&id], &[]);
}

#[test]
fn an_awsfirelens_container_without_a_router_is_refused_with_ecs_words() {
    let dir = tempfile::tempdir().unwrap();
    let mf = Mf::new();
    let f = dir.path().join("no-router.json");
    std::fs::write(
        &f,
        json!({"family": "no-router", "containerDefinitions": [{
            "name": "app", "image": "busybox", "memory": 64,
            "logConfiguration": {"logDriver": "awsfirelens",
                                 "options": {"Name": "cloudwatch_logs"}}}]})
        .to_string(),
    )
    .unwrap();
    let input = format!("file://{}", f.display());
    for verb in [
        vec!["validate", f.to_str().unwrap()],
        vec!["register-task-definition", "--cli-input-json", &input],
    ] {
        let out = mf.run(&verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                "containerDefinitions[0].logConfiguration.logDriver: ClientException: When \
                 awsfirelens log driver is specified in log configuration, a firelens \
                 configuration object must be configured in one of the containers."
            ),
            "{verb:?}: {err}"
        );
    }
    let listed = mf.json(&["list-task-definitions", "--family-prefix", "no-router"]);
    assert_eq!(listed["taskDefinitionArns"], json!([]));
}

#[test]
fn fluentd_router_with_an_s3_config_through_the_execution_role_and_metadata_off() {
    let mut env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    env.mf.set_env("AWS_ENDPOINT_URL", moto.url());
    env.mf.set_env("AWS_ACCESS_KEY_ID", "testing");
    env.mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    env.mf.set_env("AWS_REGION", "us-east-1");
    let extra = "<match **>\n    @type stdout\n</match>\n";
    let body = work.path().join("extra.conf");
    std::fs::write(&body, extra).unwrap();
    aws(
        &moto,
        &["s3api", "create-bucket", "--bucket", "router-config"],
    );
    aws(
        &moto,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "router-config",
            "--key",
            "fluentd/extra.conf",
            "--body",
            body.to_str().unwrap(),
        ],
    );
    // S3 config files are for EC2 (Fargate refuses config-file-type s3 at register).
    let td = json!({
        "family": "firelens-fluentd",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "containerDefinitions": [
            router("fluentd", json!({
                "enable-ecs-log-metadata": "false",
                "config-file-type": "s3",
                "config-file-value": "arn:aws:s3:::router-config/fluentd/extra.conf"})),
            {
                "name": "web",
                "image": "public.ecr.aws/docker/library/busybox:1.36",
                "essential": true,
                "memory": 64,
                "command": ["sh", "-c", "echo from-web; sleep 1"],
                "logConfiguration": {"logDriver": "awsfirelens", "options": {
                    "@type": "forward", "include-pattern": "from-"}},
            }
        ]
    });
    let (id, _arn, task) = env.run("firelens-fluentd", &td, &["--launch-type", "EC2"]);
    assert!(
        task["containers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "web" && c["exitCode"] == 0),
        "{task:#}"
    );
    let lines = env.json_lines(&id, "log_router");
    let file = |path: &str| {
        lines
            .iter()
            .find(|l| l["config_path"] == path)
            .unwrap_or_else(|| panic!("nothing at {path}: {lines:#?}"))["config"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let main = file("/fluentd/etc/fluent.conf");
    assert!(
        main.starts_with("\n<source>\n    @type unix\n    path /var/run/fluent.sock\n</source>\n"),
        "{main}"
    );
    assert!(
        main.contains("\n@include /fluentd/etc/external.conf\n"),
        "{main}"
    );
    assert!(
        main.contains("<match web-firelens**>\n    @type forward\n</match>"),
        "{main}"
    );
    assert!(main.contains("pattern from-"), "{main}");
    assert!(!main.contains("record_transformer"), "{main}");
    // The agent runs a Fluentd router as root to reach the socket.
    let router_env = &lines.iter().find(|l| l.get("env").is_some()).unwrap()["env"];
    assert_eq!(router_env["FLUENT_UID"], "0", "{router_env:#}");
    // The S3 object, fetched as the execution role, mounted where the agent mounts it.
    assert_eq!(file("/fluentd/etc/external.conf"), extra);
    assert!(
        lines
            .iter()
            .all(|l| l["config_path"] != "/fluent-bit/etc/fluent-bit.conf")
    );
    let rec = lines
        .iter()
        .find(|l| l["record"]["log"] == "from-web")
        .unwrap_or_else(|| panic!("from-web did not reach the router: {lines:#?}"));
    assert_eq!(rec["tag"], format!("web-firelens-{id}"));
    assert_eq!(rec["record"]["container_name"], "web");
    // enable-ecs-log-metadata false: no ECS fields.
    assert!(rec["record"].get("ecs_cluster").is_none(), "{rec}");
    assert!(rec["record"].get("ecs_task_arn").is_none(), "{rec}");
    assert_no_leaks(&env.mf, &[&id], &[]);
}

/// A routed container printing `script`, its options `options`, behind a router started
/// with `router_args`; the stopped task and the router's JSON lines.
fn run_routed(
    env: &Env,
    family: &str,
    router_args: Value,
    script: &str,
    options: Value,
) -> (String, Value, Vec<Value>) {
    let mut r = router("fluentbit", json!({}));
    r["command"] = router_args;
    let td = json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [r, {
            "name": "app",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "essential": true,
            "command": ["sh", "-c", script],
            "logConfiguration": {"logDriver": "awsfirelens", "options": options},
        }]
    });
    let (id, _, task) = env.run(family, &td, &[]);
    let app = task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap()
        .clone();
    assert_eq!(app["exitCode"], 0, "{task:#}");
    let lines = env.json_lines(&id, "log_router");
    (id, task, lines)
}

#[test]
fn lines_written_before_the_router_listens_arrive_once_it_does_all_in_order() {
    let env = Env::new();
    let n = 20_000u64;
    let (id, task, lines) = run_routed(
        &env,
        "firelens-late",
        json!(["--delay-ms", "1500"]),
        &format!("seq 1 {n}; sleep 1"),
        json!({"Name": "null", "log-driver-buffer-limit": "64m"}),
    );
    let records: Vec<&Value> = lines.iter().filter(|l| l.get("record").is_some()).collect();
    let got: Vec<u64> = records
        .iter()
        .filter_map(|l| l["record"]["log"].as_str()?.parse().ok())
        .collect();
    assert_eq!(got.len() as u64, n, "lines lost");
    assert!(got.iter().copied().eq(1..=n), "lines out of order");
    // The first line waited in the driver's buffer while the router was not listening.
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let (first, last) = (records[0], records[records.len() - 1]);
    let waited = f(first, "received") - f(first, "time");
    assert!(
        waited > 0.5,
        "the first line arrived {waited:.3} s after it was written"
    );
    let drained = f(last, "received") - f(first, "received");
    eprintln!(
        "firelens: {n} lines; the first waited {waited:.2} s for the router; the backlog and \
         the rest arrived in {drained:.2} s ({:.0} lines/s)",
        n as f64 / drained.max(1e-3)
    );
    assert!(
        !task.to_string().contains("awsfirelens dropped"),
        "{task:#}"
    );
    assert_no_leaks(&env.mf, &[&id], &[]);
}

#[test]
fn an_unreachable_router_never_blocks_the_app_and_its_drops_are_a_task_warning() {
    let env = Env::new();
    let (id, task, lines) = run_routed(
        &env,
        "firelens-down",
        json!(["--no-listen"]),
        "seq 1 2000; echo done",
        json!({"Name": "null", "log-driver-buffer-limit": "4k"}),
    );
    assert!(
        lines.iter().all(|l| l.get("record").is_none()),
        "{lines:#?}"
    );
    let warnings = task["minifargateWarnings"].to_string();
    assert!(
        warnings.contains(
            "container app: awsfirelens dropped 2001 log line(s): the log router did not \
             take them (the driver holds at most 4096 bytes, log-driver-buffer-limit, and \
             waits 5 s for the router once the container stops)"
        ),
        "{task:#}"
    );
    // The app ran to its end, every line in its local log.
    let out = env.mf.run(&["logs", &id, "--container", "app"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n2000\n") && text.contains("done"), "{text}");
    assert_no_leaks(&env.mf, &[&id], &[]);
}

/// FireLens `secretOptions` become the log router's environment (its config file names
/// them as `${name_n}`), so their values are on the host in the router's OCI bundle:
/// while the task runs, `nobody` walks the test's roots (under a world-searchable dir, as
/// /var/lib and /run are) and reads none of them; root finds the value there.
#[test]
fn a_routers_secret_options_are_not_readable_by_another_user() {
    use common::util::readable_by_nobody;
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    std::fs::set_permissions(env.mf.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let td = json!({
        "family": "firelens-walk",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            router("fluentbit", json!({})),
            {
                "name": "app",
                "image": "public.ecr.aws/docker/library/busybox:1.36",
                "essential": true,
                "stopTimeout": 2,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                "logConfiguration": {"logDriver": "awsfirelens", "options": {
                    "Name": "cloudwatch_logs", "region": "us-east-1",
                    "log_group_name": "/ecs/firelens-walk"},
                    "secretOptions": [{"name": "apikey", "valueFrom": "/firelens/walk"}]},
            }
        ]
    });
    let secrets = env.mf.dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"/firelens/walk": "fl-walk-s3cr3t"}"#).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let td = env.mf.taskdef("firelens-walk", &td.to_string());
    let v = env.mf.json(&[
        "run-task",
        "--task-definition",
        &td,
        "--detach",
        "--secrets-file",
        secrets.to_str().unwrap(),
    ]);
    let id = v["tasks"][0]["taskArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = env.status(&id);
        if t["lastStatus"] == "RUNNING" {
            break;
        }
        assert!(
            t["lastStatus"] != "STOPPED" && Instant::now() < deadline,
            "task did not run: {t:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let value = "fl-walk-s3cr3t";
    let as_root = std::process::Command::new("grep")
        .args(["-r", "-l", "-F", value])
        .arg(&env.mf.run_root)
        .arg(&env.mf.root)
        .output()
        .unwrap();
    let as_root = String::from_utf8_lossy(&as_root.stdout).into_owned();
    assert!(
        as_root.lines().any(|l| l.ends_with("config.json")),
        "the router's bundle does not hold the value: {as_root}"
    );
    let (hits, readable) = readable_by_nobody(&[env.mf.dir.path()], &[value]);
    // The secrets file is the test's own (0600); nothing else may show.
    assert!(
        hits.is_empty(),
        "nobody reads {value} in {hits:?} (root: {as_root}; nobody reads {readable:?})"
    );
    assert!(env.mf.run(&["stop-task", "--task", &id]).status.success());
    env.wait_stopped(&id);
}
