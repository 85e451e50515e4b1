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
use std::time::Duration;

/// One box: `minifargate agent` over a state root of its own.
pub struct Agent {
    pub mf: Mf,
    child: Option<Child>,
}

impl Agent {
    /// A box in cluster `default` whose tasks pull `api`'s images (its registry as
    /// public.ecr.aws's mirror), with custom `attributes` (`name=value`).
    pub fn start_for(etcd: &Etcd, api: &Api, ttl: u64, attributes: &[&str]) -> Agent {
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
        let mut args = vec![
            "agent".to_string(),
            "--cluster".into(),
            etcd.endpoint(),
            "--lease-ttl".into(),
            ttl.to_string(),
        ];
        for a in attributes {
            args.push("--attribute".into());
            args.push(a.to_string());
        }
        let log = std::fs::File::create(mf.dir.path().join("agent.log")).unwrap();
        let child = mf
            .cmd()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start minifargate agent");
        Agent {
            mf,
            child: Some(child),
        }
    }

    /// The instance id the agent keeps in its state root (once it has made it).
    pub fn id(&self) -> String {
        let file = self.mf.root.join("agent/instance-id");
        super::util::wait_until("the agent's instance id", Duration::from_secs(10), || {
            std::fs::read_to_string(&file)
                .ok()
                .map(|s| s.trim().to_string())
        })
    }

    /// Its container-instance ARN in cluster `default`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ecs:us-east-1:000000000000:container-instance/default/{}",
            self.id()
        )
    }

    /// Sends `sig` (`-TERM`, `-KILL`) to the agent and waits for it.
    pub fn signal(&mut self, sig: &str) -> ExitStatus {
        let mut c = self.child.take().expect("the agent runs");
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
        c.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.mf.kill_supervisors();
        let log = self.mf.dir.path().join("agent.log");
        eprintln!(
            "agent log {}:\n{}",
            log.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

/// `minifargate serve --cluster` on `etcd`, with `more` arguments.
pub fn serve_with(etcd: &Etcd, more: &[&str]) -> Api {
    let endpoint = etcd.endpoint();
    let mut args = vec!["--cluster", &endpoint];
    args.extend(more);
    Api::start_with(busybox_layer(Compression::Gzip, "cluster"), &args)
}

/// Boxes with these attributes each, once `api` lists them all.
pub fn boxes(etcd: &Etcd, api: &Api, ttl: u64, attributes: &[&[&str]]) -> Vec<Agent> {
    let agents: Vec<Agent> = attributes
        .iter()
        .map(|a| Agent::start_for(etcd, api, ttl, a))
        .collect();
    api.wait_for(20, "every instance listed", || {
        let v = api.aws_json(&["list-container-instances"]);
        (v["containerInstanceArns"].as_array().unwrap().len() == agents.len()).then_some(())
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
