//! Cluster-mode harness (docs/cluster.md): boxes as `minifargate agent --cluster` processes,
//! each over a state root of its own, and `minifargate serve --cluster` driven with the real
//! AWS CLI. Each agent is killed by its pid and its supervisors by theirs on drop, also when
//! a test panics; [`super::cli::Mf`] removes its directories.

use super::api::Api;
use super::cli::Mf;
use super::etcd::Etcd;
use super::image::{Compression, busybox_layer};
use serde_json::Value;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One box: `minifargate agent` over a state root of its own.
pub struct Agent {
    pub mf: Mf,
    pub child: Option<Child>,
    args: Vec<String>,
}

impl Agent {
    pub fn start(etcd: &Etcd, ttl: u64, attributes: &[&str]) -> Agent {
        Agent::start_with(etcd, ttl, attributes, &[])
    }

    /// An agent whose tasks pull `api`'s images (its registry as public.ecr.aws's mirror).
    pub fn start_for(etcd: &Etcd, api: &Api, ttl: u64, attributes: &[&str]) -> Agent {
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
        Agent::start_in(mf, etcd, ttl, attributes, &[])
    }

    pub fn start_with(etcd: &Etcd, ttl: u64, attributes: &[&str], more: &[&str]) -> Agent {
        Agent::start_in(Mf::new(), etcd, ttl, attributes, more)
    }

    pub fn start_in(mf: Mf, etcd: &Etcd, ttl: u64, attributes: &[&str], more: &[&str]) -> Agent {
        // The box's certificate, unless the test brings its own TLS flags.
        let tls = etcd.agent_args();
        let mut all: Vec<&str> = if more.iter().any(|a| a.starts_with("--etcd-")) {
            Vec::new()
        } else {
            tls.iter().map(String::as_str).collect()
        };
        all.extend(more);
        Agent::start_on(mf, &etcd.endpoint(), ttl, attributes, &all)
    }

    /// An agent of the etcd at `endpoints` (comma-separated).
    pub fn start_on(
        mf: Mf,
        endpoints: &str,
        ttl: u64,
        attributes: &[&str],
        more: &[&str],
    ) -> Agent {
        Agent::launch(mf, &["--cluster", endpoints], ttl, attributes, more)
    }

    /// An agent of a box that joined (or joins, with `--token` in `more`) at serve's port
    /// for boxes `server`, with no etcd endpoint: its store calls go through that port.
    pub fn start_through(mf: Mf, server: &str, ttl: u64, more: &[&str]) -> Agent {
        Agent::launch(mf, &["--server", server], ttl, &[], more)
    }

    fn launch(mf: Mf, store: &[&str], ttl: u64, attributes: &[&str], more: &[&str]) -> Agent {
        let mut args = vec!["agent".to_string()];
        args.extend(store.iter().map(|a| a.to_string()));
        args.extend(["--lease-ttl".to_string(), ttl.to_string()]);
        args.extend(more.iter().map(|a| a.to_string()));
        // Not the host's /etc/ecs/ecs.config: an empty file of the test's own, unless the
        // test gives one.
        if !more.contains(&"--ecs-config") {
            let empty = mf.dir.path().join("ecs.config");
            std::fs::write(&empty, "").unwrap();
            args.push("--ecs-config".into());
            args.push(empty.display().to_string());
        }
        for a in attributes {
            args.push("--attribute".into());
            args.push(a.to_string());
        }
        let mut a = Agent {
            mf,
            child: None,
            args,
        };
        a.spawn();
        a
    }

    pub fn log(&self) -> std::path::PathBuf {
        self.mf.dir.path().join("agent.log")
    }

    /// Starts the agent (again, after [`Agent::signal`]).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = self
            .mf
            .cmd()
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start minifargate agent");
        self.child = Some(child);
    }

    /// Leaves `flag` and its value out of the next [`Agent::spawn`]'s arguments.
    pub fn without(&mut self, flag: &str) {
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            self.args.drain(i..(i + 2).min(self.args.len()));
        }
    }

    /// The instance id the agent keeps in its state root (once it has made it).
    pub fn id(&self) -> String {
        instance_id(&self.mf.root)
    }

    /// Its container-instance ARN in cluster `default`.
    pub fn arn(&self) -> String {
        instance_arn(&self.mf.root)
    }

    pub fn signal(&mut self, sig: &str) -> ExitStatus {
        let mut c = self.child.take().expect("the agent runs");
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
        c.wait().unwrap()
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The agent's endpoint, as its log names it once registered.
    pub fn endpoint(&self) -> String {
        super::util::wait_until("the agent registered", Duration::from_secs(20), || {
            self.log_text()
                .split(" endpoint=")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .map(str::to_string)
        })
    }

    /// Kills the agent (SIGKILL, by its pid) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How many times the agent has registered (its log's lines saying so).
    pub fn registrations(&self) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .matches("registered: running the tasks placed here")
            .count()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.mf.kill_supervisors();
        eprintln!(
            "agent log {}:\n{}",
            self.log().display(),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }
}

/// ECS operation `op` with request `body`, signed, straight to `api` (no AWS CLI and its
/// retries): the response body, a newline and the HTTP status; how long it took.
pub fn ecs_call(api: &Api, op: &str, body: &str) -> (String, std::time::Duration) {
    let start = Instant::now();
    let out = api
        .curl()
        .args(["-X", "POST", &api.endpoint])
        .args([
            "-H",
            &format!("X-Amz-Target: AmazonEC2ContainerServiceV20141113.{op}"),
        ])
        .args(["-H", "Content-Type: application/x-amz-json-1.1"])
        .args(["--data-binary", body])
        .args(["-w", "\n%{http_code}"])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        start.elapsed(),
    )
}

/// The instance id an agent keeps in state root `root` (once it has made it).
pub fn instance_id(root: &std::path::Path) -> String {
    let file = root.join("agent/instance-id");
    super::util::wait_until("the agent's instance id", Duration::from_secs(10), || {
        std::fs::read_to_string(&file)
            .ok()
            .map(|s| s.trim().to_string())
    })
}

/// The container-instance ARN, in cluster `default`, of the agent over state root `root`.
pub fn instance_arn(root: &std::path::Path) -> String {
    format!(
        "arn:aws:ecs:us-east-1:000000000000:container-instance/default/{}",
        instance_id(root)
    )
}

pub fn serve(etcd: &Etcd) -> Api {
    serve_with(etcd, &[])
}

pub fn serve_with(etcd: &Etcd, more: &[&str]) -> Api {
    let tls = etcd.serve_args();
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.extend(more);
    serve_on(&etcd.endpoint(), &all)
}

/// [`serve_with`], `serve` with the variables `env` (e.g. a short metric period).
pub fn serve_env(etcd: &Etcd, more: &[&str], env: &[(&str, &str)]) -> Api {
    let (tls, endpoint) = (etcd.serve_args(), etcd.endpoint());
    let mut all = vec!["--cluster", endpoint.as_str()];
    all.extend(tls.iter().map(String::as_str));
    all.extend(more);
    Api::start_env(busybox_layer(Compression::Gzip, "cluster"), &all, env)
}

/// `serve --cluster endpoints MORE`.
pub fn serve_on(endpoints: &str, more: &[&str]) -> Api {
    let mut args = vec!["--cluster", endpoints];
    args.extend(more);
    Api::start_with(busybox_layer(Compression::Gzip, "cluster"), &args)
}

/// The container instances listed (with `MORE`, e.g. a filter), sorted. A cluster that
/// does not exist yet lists none: a box registers once serve's leader bound its instance
/// to it (docs/cluster.md "Security"), so a test may ask before any has.
pub fn list(api: &Api, more: &[&str]) -> Vec<String> {
    let mut args = vec!["list-container-instances"];
    args.extend(more);
    let out = api.aws(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("ClusterNotFoundException") {
        return Vec::new();
    }
    assert!(out.status.success(), "aws ecs {args:?} failed: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut arns: Vec<String> = v["containerInstanceArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    arns.sort();
    arns
}

pub fn describe(api: &Api, arn: &str) -> Value {
    let v = api.aws_json(&["describe-container-instances", "--container-instances", arn]);
    assert_eq!(v["failures"], serde_json::json!([]), "{v:#}");
    v["containerInstances"][0].clone()
}

pub fn connected(api: &Api, arn: &str) -> bool {
    describe(api, arn)["agentConnected"].as_bool().unwrap()
}

/// Polls until `arn`'s agentConnected is `want`; how long that took.
pub fn until_connected(api: &Api, arn: &str, want: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if connected(api, arn) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{arn} not agentConnected {want} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The task definition of the task tests: one busybox container that sleeps (and, as PID
/// 1, ignores SIGTERM: it is killed 2 s after a stop), 256 CPU units and 128 MiB, awsvpc.
pub const SLEEPER: &str = r#"{
  "family": "cluster-sleeper",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "256",
  "memory": "128",
  "containerDefinitions": [{
    "name": "main",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sleep", "300"],
    "stopTimeout": 2,
    "essential": true
  }]
}"#;

/// The serve the leader key names (its value is "HOST pid PID").
pub fn leader_pid(etcd: &Etcd) -> Option<u32> {
    let out = etcd.etcdctl(&["get", "/minifargate/v1/leader", "--print-value-only"]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
}

/// Two boxes whose tasks pull `api`'s images, with agent leases of `ttl` seconds, once
/// `api` lists both.
pub fn two_boxes(etcd: &Etcd, api: &Api, ttl: u64) -> (Agent, Agent) {
    let a = Agent::start_for(etcd, api, ttl, &[]);
    let b = Agent::start_for(etcd, api, ttl, &[]);
    api.wait_for(20, "both instances listed", || {
        (list(api, &[]).len() == 2).then_some(())
    });
    (a, b)
}

/// Creates service `name` of 2 EC2 tasks of `family`, one on each box
/// (`distinctInstance`), container `main`'s port 8080 behind target group `tg`, in cluster
/// `default`; waits until both run and returns them as [`service_tasks`] does.
pub fn two_spread_tasks_behind(
    api: &Api,
    name: &str,
    family: &str,
    tg: &str,
) -> Vec<(String, String)> {
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        name,
        "--task-definition",
        family,
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=distinctInstance",
        "--load-balancers",
        &format!("targetGroupArn={tg},containerName=main,containerPort=8080"),
    ]);
    api.wait_for(120, "2 service tasks RUNNING", || {
        let p = service_tasks(api, name);
        (p.len() == 2).then_some(p)
    })
}

/// Each RUNNING task of service `name` and the instance it is on.
pub fn service_tasks(api: &Api, name: &str) -> Vec<(String, String)> {
    let arns = api.aws_json(&["list-tasks", "--service-name", name]);
    let arns: Vec<&str> = arns["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    if arns.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["describe-tasks", "--tasks"];
    args.extend(&arns);
    let v = api.aws_json(&args);
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING")
        .map(|t| {
            (
                t["taskArn"].as_str().unwrap().to_string(),
                t["containerInstanceArn"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The instance each RUNNING task of service `name` is on.
pub fn service_placement(api: &Api, name: &str) -> Vec<String> {
    service_tasks(api, name)
        .into_iter()
        .map(|(_, i)| i)
        .collect()
}

/// Boxes with these attributes each, once `api` lists them all.
pub fn boxes(etcd: &Etcd, api: &Api, ttl: u64, attributes: &[&[&str]]) -> Vec<Agent> {
    let agents: Vec<Agent> = attributes
        .iter()
        .map(|a| Agent::start_for(etcd, api, ttl, a))
        .collect();
    api.wait_for(20, "every instance listed", || {
        (api.instances_listed(None).len() == agents.len()).then_some(())
    });
    agents
}

/// Registers task definition `json` (written to `file`) through `api`.
pub fn register(api: &Api, file: &str, json: &str) {
    let def = api.file(file, json);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
}

/// Container instance `arn` as DescribeContainerInstances shows it.
pub fn instance(api: &Api, arn: &str) -> Value {
    let v = api.aws_json(&["describe-container-instances", "--container-instances", arn]);
    assert_eq!(v["failures"], serde_json::json!([]), "{v:#}");
    v["containerInstances"][0].clone()
}

/// The integer value of resource `name` in `ci`'s `list` (registeredResources or
/// remainingResources).
pub fn resource(ci: &Value, list: &str, name: &str) -> i64 {
    ci[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["integerValue"].as_i64())
        .unwrap_or_else(|| panic!("no {list} {name} in {ci:#}"))
}

/// RunTask of the registered `cluster-sleeper` ([`SLEEPER`]) on EC2, once its task is
/// RUNNING (`what` names the wait): the answer and the task's ARN. An answer without a
/// task fails the test with the answer (its `failures` say why).
pub fn sleeper_running(api: &Api, what: &str) -> (Value, String) {
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
    ]);
    let Some(task) = run["tasks"][0]["taskArn"].as_str().map(str::to_string) else {
        panic!("run-task placed no task: {run:#}");
    };
    api.wait_for(60, what, || {
        (describe_task(api, &task)["lastStatus"] == "RUNNING").then_some(())
    });
    (run, task)
}

/// Task `arn` as DescribeTasks shows it.
pub fn describe_task(api: &Api, arn: &str) -> Value {
    let v = api.aws_json(&["describe-tasks", "--tasks", arn]);
    assert_eq!(v["failures"], serde_json::json!([]), "{v:#}");
    v["tasks"][0].clone()
}

/// A RunTask or StartTask answer's tasks as (task ARN, container-instance ARN).
pub fn placed(run: &Value) -> Vec<(String, String)> {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["taskArn"].as_str().unwrap().to_string(),
                t["containerInstanceArn"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A RunTask or StartTask answer's failures as (ARN, reason), sorted.
pub fn failures(run: &Value) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = run["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["arn"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    f.sort();
    f
}

/// The task's `minifargate.warning` attributes (what the AWS CLI shows of its warnings).
pub fn warnings(t: &Value) -> Vec<String> {
    t["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] == "minifargate.warning")
        .map(|a| a["value"].as_str().unwrap().to_string())
        .collect()
}
