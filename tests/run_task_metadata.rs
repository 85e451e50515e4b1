//! Root integration tests of what a task sees inside: the task metadata endpoint v4 at
//! 169.254.170.2 (asked with busybox `wget` from inside the container, through `exec`)
//! and the credentials endpoint, backed by moto_server's STS on loopback.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Layer, busybox_all_applets};
use common::registry::Registry;
use common::services::Server;
use serde_json::Value;
use std::process::Output;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

struct Env {
    mf: Mf,
    _reg: Registry,
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(Layer::new(
            Compression::Gzip,
            busybox_all_applets("run-task-metadata"),
        ));
        Env { mf, _reg: reg }
    }

    /// AWS settings pointing every SDK call of minifargate at `moto`.
    fn use_moto(&mut self, moto: &Server) {
        self.mf.set_env("AWS_ENDPOINT_URL", moto.url());
        self.mf.set_env("AWS_ACCESS_KEY_ID", "testing");
        self.mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
        self.mf.set_env("AWS_REGION", "us-east-1");
    }

    fn json(&self, args: &[&str]) -> Value {
        self.mf.json(args)
    }

    fn describe(&self, id: &str) -> Value {
        self.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
    }

    /// Runs `taskdef` detached (with `extra` run-task flags) until RUNNING; returns the ids.
    fn start(&self, name: &str, taskdef: &str, extra: &[&str]) -> Vec<String> {
        let td = self.mf.taskdef(name, taskdef);
        let mut args = vec!["run-task", "--task-definition", &td, "--detach"];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        let ids: Vec<String> = v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let arn = t["taskArn"].as_str().unwrap();
                arn.rsplit('/').next().unwrap().to_string()
            })
            .collect();
        for id in &ids {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let t = self.describe(id);
                if t["lastStatus"] == "RUNNING" {
                    break;
                }
                assert!(
                    t["lastStatus"] != "STOPPED" && Instant::now() < deadline,
                    "task did not start: {t:#}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        ids
    }

    /// `sh -c script` inside the task's container.
    fn sh(&self, id: &str, script: &str) -> Output {
        self.mf.run(&["exec", id, "--", "sh", "-c", script])
    }

    fn sh_ok(&self, id: &str, script: &str) -> String {
        let out = self.sh(id, script);
        assert!(out.status.success(), "{script} failed in task {id}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `wget -qO-` of a metadata URL from inside the task, as JSON.
    fn get(&self, id: &str, url: &str) -> Value {
        let body = self.sh_ok(id, &format!("wget -qO- {url}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"))
    }

    /// A raw HTTP GET from inside the task (busybox `nc`): status line and body, also
    /// for error statuses (which `wget` does not print).
    fn raw_get(&self, id: &str, path: &str) -> (u16, Value) {
        let out = self.sh_ok(
            id,
            &format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc 169.254.170.2 80"),
        );
        let status: u16 = out
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn stop_all(&self, ids: &[String]) {
        for id in ids {
            assert!(self.mf.run(&["stop-task", "--task", id]).status.success());
        }
        for id in ids {
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.describe(id)["lastStatus"] != "STOPPED" {
                assert!(Instant::now() < deadline, "task {id} did not stop");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn taskdef(family: &str, extra: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512"{extra},
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}","stopTimeout":2,
              "dockerLabels":{{"team":"core"}},
              "command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]}}]}}"#
    )
}

#[test]
fn metadata_v4_from_inside_a_task_matches_describe_tasks() {
    let env = Env::new();
    let ids = env.start(
        "md",
        &taskdef("md", ""),
        &["--launch-type", "FARGATE", "--tags", "key=team,value=core"],
    );
    let id = &ids[0];
    let described = env.describe(id);

    // The variables every container gets.
    let vars = env.sh_ok(id, "echo $ECS_CONTAINER_METADATA_URI_V4; echo $ECS_CONTAINER_METADATA_URI; echo $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    let lines: Vec<&str> = vars.lines().collect();
    assert_eq!(lines[0], format!("http://169.254.170.2/v4/{id}-0"));
    assert_eq!(lines[1], format!("http://169.254.170.2/v3/{id}-0"));
    assert!(lines[2].starts_with("/v2/credentials/"), "{vars}");
    assert!(lines[2].len() >= "/v2/credentials/".len() + 36, "{vars}");

    let task = env.get(id, "$ECS_CONTAINER_METADATA_URI_V4/task");
    assert_eq!(task["TaskARN"], described["taskArn"]);
    assert_eq!(task["Cluster"], described["clusterArn"]);
    assert_eq!(task["Family"], "md");
    assert_eq!(task["KnownStatus"], "RUNNING");
    assert_eq!(task["DesiredStatus"], "RUNNING");
    assert_eq!(task["LaunchType"], "FARGATE");
    assert_eq!(task["Limits"]["CPU"], 0.25);
    assert_eq!(task["Limits"]["Memory"], 512);
    assert!(task["PullStartedAt"].is_string(), "{task:#}");
    let c = &task["Containers"][0];
    assert_eq!(c["DockerId"], format!("{id}-0"));
    assert_eq!(c["Name"], "app");
    assert_eq!(c["Image"], BUSYBOX);
    assert_eq!(c["ImageID"], described["containers"][0]["imageDigest"]);
    assert_eq!(c["KnownStatus"], "RUNNING");
    assert_eq!(c["Labels"]["team"], "core");
    assert_eq!(
        c["Labels"]["com.amazonaws.ecs.task-arn"],
        described["taskArn"]
    );
    assert!(c["StartedAt"].is_string());
    let ip = described["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]
        .as_str()
        .unwrap();
    let net = &c["Networks"][0];
    assert_eq!(net["NetworkMode"], "awsvpc");
    assert_eq!(net["IPv4Addresses"][0], ip);
    assert_eq!(
        net["IPv4SubnetCIDRBlock"],
        env.mf.env_value("MINIFARGATE_SUBNET").unwrap()
    );
    let details = described["attachments"][0]["details"].as_array().unwrap();
    let detail = |k: &str| {
        details
            .iter()
            .find(|d| d["name"] == k)
            .map(|d| d["value"].clone())
            .unwrap()
    };
    assert_eq!(net["MACAddress"], detail("macAddress"));
    assert_eq!(net["PrivateDNSName"], detail("privateDnsName"));

    // The container's own record, and the tags.
    let own = env.get(id, "$ECS_CONTAINER_METADATA_URI_V4");
    assert_eq!(own["DockerId"], format!("{id}-0"));
    let tagged = env.get(id, "$ECS_CONTAINER_METADATA_URI_V4/taskWithTags");
    assert_eq!(tagged["TaskTags"]["team"], "core");
    // v3 clients get the same task.
    let v3 = env.get(id, "$ECS_CONTAINER_METADATA_URI/task");
    assert_eq!(v3["TaskARN"], described["taskArn"]);

    // Stats from the task's cgroups: memory in use, under the task's 512 MiB.
    let st = env.get(id, "$ECS_CONTAINER_METADATA_URI_V4/stats");
    let usage = st["memory_stats"]["usage"].as_u64().unwrap();
    let limit = st["memory_stats"]["limit"].as_u64().unwrap();
    assert!(usage > 0 && usage < limit, "{st:#}");
    assert!(limit <= 512 << 20, "{st:#}");
    assert!(
        st["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(st["pids_stats"]["current"].as_u64().unwrap() >= 1);
    assert!(st["networks"]["eth0"]["rx_bytes"].is_u64(), "{st:#}");
    let all = env.get(id, "$ECS_CONTAINER_METADATA_URI_V4/task/stats");
    assert!(all[format!("{id}-0")]["memory_stats"]["usage"].is_u64());

    // Unknown containers and paths are refused; no task role: a JSON error saying so.
    let (status, body) = env.raw_get(id, "/v4/0123-9/task");
    assert_eq!(status, 404, "{body}");
    let creds_path = lines[2];
    let (status, body) = env.raw_get(id, creds_path);
    assert_eq!(status, 404);
    assert_eq!(body["code"], "NoTaskRole");
    assert!(body["message"].as_str().unwrap().contains("taskRoleArn"));

    env.stop_all(&ids);
}

#[test]
fn credentials_endpoint_assumes_the_task_role_and_refuses_other_tasks() {
    let mut env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    env.use_moto(&moto);
    let role = "arn:aws:iam::123456789012:role/app-role";
    let ids = env.start(
        "creds",
        &taskdef("creds", &format!(r#","taskRoleArn":"{role}""#)),
        &["--count", "2"],
    );
    let (a, b) = (&ids[0], &ids[1]);
    let uri_a = env.sh_ok(a, "echo -n $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    let uri_b = env.sh_ok(b, "echo -n $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    assert_ne!(uri_a, uri_b, "each task has its own credentials id");

    let c = env.get(
        a,
        "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    );
    assert_eq!(c["RoleArn"], role);
    // moto's STS hands out temporary (ASIA…) keys with a session token.
    assert!(
        c["AccessKeyId"].as_str().unwrap().starts_with("ASIA"),
        "{c:#}"
    );
    assert!(!c["SecretAccessKey"].as_str().unwrap().is_empty());
    assert!(!c["Token"].as_str().unwrap().is_empty());
    let exp = chrono::DateTime::parse_from_rfc3339(c["Expiration"].as_str().unwrap()).unwrap();
    assert!(exp > chrono::Utc::now());
    // Cached: asking again gives the same keys without another AssumeRole.
    let again = env.get(
        a,
        "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    );
    assert_eq!(again["AccessKeyId"], c["AccessKeyId"]);
    let log = std::fs::read_to_string(&moto.log).unwrap();
    let calls = log
        .lines()
        .filter(|l| l.contains("\"POST / HTTP/1.1\""))
        .count();
    assert_eq!(calls, 1, "one STS call: {log}");

    // Task b asking for a's path reaches only its own endpoint, which refuses it.
    let (status, body) = env.raw_get(b, &uri_a);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "InvalidIdInRequest");
    let (status, own) = env.raw_get(b, &uri_b);
    assert_eq!(status, 200);
    // The same for task metadata: b's 169.254.170.2 is b's own endpoint, which does not
    // know a's containers (each task's endpoint lives in its own netns).
    let meta_a = env.sh_ok(a, "echo -n $ECS_CONTAINER_METADATA_URI_V4");
    let path_a = meta_a.trim_start_matches("http://169.254.170.2");
    assert!(path_a.starts_with("/v4/"), "{meta_a}");
    let (status, _) = env.raw_get(a, &format!("{path_a}/task"));
    assert_eq!(status, 200, "a reaches its own metadata");
    let (status, body) = env.raw_get(b, &format!("{path_a}/task"));
    assert_eq!(status, 404, "b must not get a's task metadata: {body}");
    assert_ne!(own["AccessKeyId"], c["AccessKeyId"]);
    // The credentials are nowhere in what minifargate prints or stores.
    let described = serde_json::to_string(&env.describe(a)).unwrap();
    assert!(!described.contains(uri_a.trim_start_matches("/v2/credentials/")));
    env.stop_all(&ids);

    // No role, but the host's identity handed over by explicit opt-in.
    let ids = env.start(
        "hostcreds",
        &taskdef("hostcreds", ""),
        &["--task-credentials", "host"],
    );
    let c = env.get(
        &ids[0],
        "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    );
    assert_eq!(c["RoleArn"], "");
    assert!(!c["Token"].as_str().unwrap().is_empty(), "{c:#}");
    assert_ne!(
        c["AccessKeyId"], "testing",
        "long-term keys never enter a task"
    );
    env.stop_all(&ids);
}

/// Port 80 is the task's: a container's web server binding `0.0.0.0:80` starts, serves
/// on the task's own address, and the endpoint at 169.254.170.2:80 still answers next to
/// it (it listens on 51679 behind a stateless port rewrite inside the task's namespace)
/// — in awsvpc and in bridge mode. Nothing turned connection tracking on in the task's
/// namespace (a DNAT did; its entries cost a walk of the whole conntrack table when the
/// namespace is removed, issue 39).
#[test]
fn a_web_server_on_port_80_runs_next_to_the_endpoint() {
    let env = Env::new();
    for mode in ["awsvpc", "bridge"] {
        let family = format!("web80-{mode}");
        let compat = if mode == "bridge" { "EC2" } else { "FARGATE" };
        let td = format!(
            r#"{{"family":"{family}","networkMode":"{mode}","requiresCompatibilities":["{compat}"],
                "cpu":"256","memory":"512",
                "containerDefinitions":[{{"name":"web","image":"{BUSYBOX}","stopTimeout":2,
                  "command":["sh","-c","mkdir -p /www && echo served-on-80 > /www/index.html && exec httpd -f -p 80 -h /www"]}}]}}"#
        );
        let ids = env.start(&family, &td, &[]);
        let id = &ids[0];
        // The server owns port 80 on every address of the namespace...
        let page = env.sh_ok(id, "wget -qO- http://127.0.0.1:80/");
        assert_eq!(page.trim(), "served-on-80", "{mode}");
        let page = env.sh_ok(
            id,
            "wget -qO- http://$(ip -4 -o addr show eth0 | awk '{split($4, a, \"/\"); print a[1]}'):80/",
        );
        assert_eq!(
            page.trim(),
            "served-on-80",
            "{mode}: on the task's own address"
        );
        let netstat = env.sh_ok(id, "netstat -ltn");
        assert!(
            netstat
                .lines()
                .any(|l| l.contains(" 0.0.0.0:80 ") || l.contains(" :::80 ")),
            "{mode}: httpd listens on the wildcard address, port 80: {netstat}"
        );
        // ...and the metadata URL still reaches the endpoint, not the web server.
        let task = env.get(id, "$ECS_CONTAINER_METADATA_URI_V4/task");
        assert_eq!(task["Family"], family.as_str(), "{mode}");
        assert_eq!(
            task["TaskARN"],
            env.describe(id)["taskArn"],
            "{mode}: {task:#}"
        );
        // Connection tracking would have kept these connections (TIME_WAIT, 120 s).
        let tracked = env.sh_ok(id, "cat /proc/sys/net/netfilter/nf_conntrack_count");
        assert_eq!(
            tracked.trim(),
            "0",
            "{mode}: no connection tracked in the task's namespace"
        );
        env.stop_all(&ids);
    }
}
