//! `run-task` (aws ecs run-task) and `run IMAGE` (a one-container task, like docker run):
//! RunTask through the core (crate::ecs::tasks), then print its JSON or follow the tasks.

use super::GlobalOpts;
use super::run_input::{parse_tags, read_env_files};
use super::tasks::{print_entry, timeline_text};
use crate::ecs::EcsError;
use crate::ecs::table::Op;
use crate::ecs::tasks::{self as ecs_tasks, Local, RunTaskRequest, Started};
use crate::store::{LastStatus, StopCode, Store};
use crate::supervisor::Client;
use crate::supervisor::launch;
use crate::task::{PullPolicy, TaskPaths, stop};
use crate::taskdef::{self, LaunchType};
use anyhow::{Context, bail};
use clap::Args;
use runtime::LogFollower;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Run a task from a task definition, like `aws ecs run-task`.
///
/// Attached by default: every container's output is shown with a `name |` prefix, Ctrl-C
/// stops the task (twice: kills it), and the exit code is the essential container's.
///
/// Examples:
///   minifargate run-task --task-definition file://examples/hello.json
///   minifargate run-task --task-definition web:3 --detach
#[derive(Debug, Args)]
pub struct RunTaskArgs {
    /// Cluster name or ARN (default `default`): `default` is created on first use, as in
    /// ECS; any other must exist (`create-cluster`).
    #[arg(long)]
    pub cluster: Option<String>,
    /// `family`, `family:revision`, a task definition ARN, or `file://taskdef.json` (read,
    /// registered and run; `~` is $HOME).
    #[arg(long)]
    pub task_definition: Option<String>,
    /// Number of tasks (1-10; default 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub count: Option<u32>,
    /// RunTask overrides, JSON or shorthand:
    /// `{"containerOverrides":[{"name":…,"command":[…],"environment":[…]}]}`.
    #[arg(long)]
    pub overrides: Option<String>,
    /// FARGATE or EC2 (default: the definition's requiresCompatibilities rules).
    #[arg(long, value_enum)]
    pub launch_type: Option<LaunchType>,
    /// Capacity provider strategy items: `capacityProvider=FARGATE,weight=1,base=0` per
    /// item (shorthand or JSON); FARGATE and FARGATE_SPOT run as the FARGATE launch type.
    #[arg(long, num_args = 1..)]
    pub capacity_provider_strategy: Vec<String>,
    /// Placement constraints (`type=memberOf,expression=…`): the cluster's container
    /// instance (this host) must satisfy them, or the task is a failure and not started.
    #[arg(long, num_args = 1..)]
    pub placement_constraints: Vec<String>,
    /// Placement strategy (`type=spread,field=…`): checked and recorded; with one container
    /// instance (this host) every strategy chooses it.
    #[arg(long, num_args = 1..)]
    pub placement_strategy: Vec<String>,
    /// Fargate platform version (`LATEST`, `1.4.0`): recorded on the task.
    #[arg(long)]
    pub platform_version: Option<String>,
    /// Copy tags to the tasks from the task definition (`TASK_DEFINITION`), or `NONE`.
    #[arg(long)]
    pub propagate_tags: Option<String>,
    /// Add the `aws:ecs:clusterName` and `aws:ecs:serviceName` tags, as ECS does.
    #[arg(long, overrides_with = "no_enable_ecs_managed_tags")]
    pub enable_ecs_managed_tags: bool,
    /// Do not add ECS-managed tags (the default).
    #[arg(long)]
    pub no_enable_ecs_managed_tags: bool,
    /// An idempotency token: the same request with the same token runs its tasks once.
    #[arg(long)]
    pub client_token: Option<String>,
    /// A reference id recorded on the tasks (ECS's `referenceId`).
    #[arg(long)]
    pub reference_id: Option<String>,
    /// Volume configurations at launch (JSON or shorthand), as RunTask's
    /// `volumeConfigurations`.
    #[arg(long, num_args = 1..)]
    pub volume_configurations: Vec<String>,
    /// Recorded as `startedBy` (list-tasks --started-by filters on it).
    #[arg(long)]
    pub started_by: Option<String>,
    /// Task group (default `family:<family>`).
    #[arg(long)]
    pub group: Option<String>,
    /// Tags: `key=K,value=V` per tag (`--tags key=team,value=core key=env,value=dev`) or
    /// JSON `[{"key":"team","value":"core"}]`; shown by `describe-tasks --include TAGS`.
    #[arg(long, num_args = 1..)]
    pub tags: Vec<String>,
    /// Recorded as the task's `enableExecuteCommand`.
    #[arg(long, overrides_with = "no_enable_execute_command")]
    pub enable_execute_command: bool,
    /// Do not record enableExecuteCommand (the default); the AWS CLI's name for
    /// `--no-enable-execute-command`, which is accepted too.
    #[arg(long = "disable-execute-command", alias = "no-enable-execute-command")]
    pub no_enable_execute_command: bool,
    /// awsvpc network configuration, JSON or shorthand
    /// (`awsvpcConfiguration={subnets=[subnet-1],securityGroups=[sg-1]}`); its subnet and
    /// security groups are recorded in the task's ENI attachment.
    #[arg(long)]
    pub network_configuration: Option<String>,
    #[command(flatten)]
    pub input: super::aws::InputOpts,
    /// With --detach: how to print the RunTask response.
    #[command(flatten)]
    pub output: super::aws::OutputOpts,
    /// Variables for every container, from a file of `KEY=VALUE` lines (Docker's
    /// `--env-file` rules; repeatable, later files win). The task definition's
    /// `environment` and `environmentFiles` and --overrides win over them.
    #[arg(long, help_heading = "Local options")]
    pub env_file: Vec<std::path::PathBuf>,
    /// After the task stops, print how long each launch phase took, per container
    /// (pull, network, rootfs, create, start, first healthy, stop) on stderr.
    #[arg(long, conflicts_with = "detach", help_heading = "Local options")]
    pub timeline: bool,
    /// Print the RunTask response and return instead of following the task.
    #[arg(long, short, help_heading = "Local options")]
    pub detach: bool,
    /// When to pull images, as the ECS agent's ECS_IMAGE_PULL_BEHAVIOR: `default` asks the
    /// registry with the task's credentials (the manifest only) and runs a cached image
    /// only when the registry cannot be reached; `always`; `prefer-cached` (`missing`)
    /// uses a cached image without asking; `never`.
    #[arg(long, value_enum, default_value_t = PullPolicy::Default, help_heading = "Local options")]
    pub pull: PullPolicy,
    /// Serve an EFS/FSx volume (or one configured at launch) from a local directory:
    /// `NAME=/local/dir`, bind-mounted where the task definition mounts volume NAME.
    /// Repeatable. Without it such volumes are an error.
    #[arg(
        long = "volume-map",
        value_name = "NAME=DIR",
        help_heading = "Local options"
    )]
    pub volume_map: Vec<String>,
    /// Resolve `secrets` from this local JSON file (`{"<valueFrom>": "<value>", …}`)
    /// instead of SSM Parameter Store / Secrets Manager (offline use).
    #[arg(long, value_name = "FILE", help_heading = "Local options")]
    pub secrets_file: Option<std::path::PathBuf>,
    /// What the task's credentials endpoint hands out: `role` (default; the taskRoleArn
    /// assumed through STS with this host's credentials, an error without one) or `host`
    /// (a task without a taskRoleArn gets this host's own identity: explicit opt-in).
    #[arg(long, value_enum, default_value_t = crate::supervisor::TaskCredentialsFrom::Role, help_heading = "Local options")]
    pub task_credentials: crate::supervisor::TaskCredentialsFrom,
    /// What pulls from ECR, `repositoryCredentials`, `secrets` and S3 `environmentFiles`
    /// act as: `role` (default; the executionRoleArn assumed through STS with this host's
    /// credentials, as ECS does, so a permission the role lacks fails here too; this host's
    /// credentials when there is none) or `host` (this host's credentials even when there
    /// is an executionRoleArn: explicit opt-in).
    #[arg(long, value_enum, default_value_t = crate::supervisor::ExecutionCredentialsFrom::Role, help_heading = "Local options")]
    pub execution_credentials: crate::supervisor::ExecutionCredentialsFrom,
}

/// Run one container as a task, like `docker run` (same path as run-task).
///
/// Example: minifargate run public.ecr.aws/docker/library/busybox:1.36 -- echo hello
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run (pulled unless --pull never).
    pub image: String,
    /// Command (replaces the image's Cmd).
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Container name (default: derived from the image).
    #[arg(long)]
    pub name: Option<String>,
    /// Task cpu units (1024 = one vCPU).
    #[arg(long)]
    pub cpu: Option<u32>,
    /// Memory limit in MiB (the container's and the task's).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Network mode.
    #[arg(long, default_value = "awsvpc", value_parser = ["awsvpc", "bridge", "host", "none"])]
    pub network: String,
    /// Publish a port: `HOST:CONTAINER[/udp]` or `CONTAINER[/udp]` (repeatable). In awsvpc
    /// and host mode HOST must equal CONTAINER; in bridge mode HOST 0 or absent picks a
    /// dynamic port (49153-65535).
    #[arg(long = "publish", short = 'p')]
    pub publish: Vec<String>,
    /// Environment variable `KEY=VALUE` (repeatable).
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Volume `HOST_DIR:CONTAINER_PATH[:ro]` (a bind mount), or `NAME:CONTAINER_PATH[:ro]`
    /// (a shared named volume under `<root>/volumes/NAME`, created on first use). Repeatable.
    #[arg(long = "volume", short = 'v', value_name = "SRC:DEST[:ro]")]
    pub volume: Vec<String>,
    /// Variables from a file of `KEY=VALUE` lines (Docker's rules); `-e` wins over it.
    #[arg(long)]
    pub env_file: Vec<std::path::PathBuf>,
    /// After the container stops, print how long each launch phase took (stderr).
    #[arg(long, conflicts_with = "detach")]
    pub timeline: bool,
    /// Cluster name or ARN (see run-task --cluster).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Print the RunTask response and return instead of following the container.
    #[arg(long, short)]
    pub detach: bool,
    /// When to pull the image: `default`, `always`, `prefer-cached` (`missing`) or `never`
    /// (as run-task's --pull).
    #[arg(long, value_enum, default_value_t = PullPolicy::Default)]
    pub pull: PullPolicy,
}

/// run-task's options as RunTask request members (JSON), typed by the API model.
fn run_task_options(a: &RunTaskArgs) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use super::aws::structured;
    use serde_json::{Value, json};
    let shape = super::model::operation(Op::RunTask.name()).input_shape();
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let list = |name: &str, args: &[String]| -> anyhow::Result<Option<Value>> {
        if args.is_empty() {
            return Ok(None);
        }
        let option = format!("--{}", super::model::kebab(name));
        if let [one] = args
            && one.trim_start().starts_with('[')
        {
            return structured(one, &shape[name], &option).map(Some);
        }
        let items = args
            .iter()
            .map(|x| structured(x, &shape[name][0], &option))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(Value::Array(items)))
    };
    put("cluster", a.cluster.clone().map(Value::String));
    // A `file://` task definition is this host's own (read and registered), not a
    // parameter file: only `~` is resolved here.
    put(
        "taskDefinition",
        a.task_definition
            .as_ref()
            .map(|t| match t.strip_prefix("file://") {
                Some(p) => json!(format!(
                    "file://{}",
                    crate::taskdef::parse::expand_home(p).display()
                )),
                None => json!(t),
            }),
    );
    put("count", a.count.map(|c| json!(c)));
    if let Some(o) = &a.overrides {
        put(
            "overrides",
            Some(structured(o, &shape["overrides"], "--overrides")?),
        );
    }
    put(
        "launchType",
        a.launch_type.and_then(super::member).map(Value::String),
    );
    put(
        "capacityProviderStrategy",
        list("capacityProviderStrategy", &a.capacity_provider_strategy)?,
    );
    put(
        "placementConstraints",
        list("placementConstraints", &a.placement_constraints)?,
    );
    put(
        "placementStrategy",
        list("placementStrategy", &a.placement_strategy)?,
    );
    put(
        "platformVersion",
        a.platform_version.clone().map(Value::String),
    );
    put("propagateTags", a.propagate_tags.clone().map(Value::String));
    put(
        "enableECSManagedTags",
        (a.enable_ecs_managed_tags || a.no_enable_ecs_managed_tags)
            .then(|| json!(a.enable_ecs_managed_tags)),
    );
    put("clientToken", a.client_token.clone().map(Value::String));
    put("referenceId", a.reference_id.clone().map(Value::String));
    put(
        "volumeConfigurations",
        list("volumeConfigurations", &a.volume_configurations)?,
    );
    put("startedBy", a.started_by.clone().map(Value::String));
    put("group", a.group.clone().map(Value::String));
    if !a.tags.is_empty() {
        put("tags", Some(serde_json::to_value(parse_tags(&a.tags)?)?));
    }
    put(
        "enableExecuteCommand",
        (a.enable_execute_command || a.no_enable_execute_command)
            .then(|| json!(a.enable_execute_command)),
    );
    if let Some(n) = &a.network_configuration {
        put(
            "networkConfiguration",
            Some(structured(
                n,
                &shape["networkConfiguration"],
                "--network-configuration",
            )?),
        );
    }
    Ok(m)
}

pub fn run_task(g: &GlobalOpts, a: RunTaskArgs) -> anyhow::Result<ExitCode> {
    let ecs = g.ecs();
    let mut local = Local {
        files: true,
        remote: false,
        env_file: read_env_files(&a.env_file)?,
        volume_map: crate::supervisor::isolation::volumes::parse_map(&a.volume_map)?,
        pull: a.pull,
        secrets_file: a
            .secrets_file
            .as_deref()
            .map(|p| -> anyhow::Result<std::path::PathBuf> {
                // Checked now, so a bad file fails run-task before anything exists.
                crate::supervisor::secrets::read_secrets_file(p)?;
                Ok(std::path::absolute(p)?)
            })
            .transpose()?,
        host_credentials: a.task_credentials == crate::supervisor::TaskCredentialsFrom::Host,
        host_execution_credentials: a.execution_credentials
            == crate::supervisor::ExecutionCredentialsFrom::Host,
        follow: !a.detach,
        deployment: None,
        early: None,
    };
    // Its exec and start overlap what follows (ecs::tasks::prestart).
    local.early = ecs_tasks::prestart(&ecs, &local);
    let Some(req) = super::aws::request(Op::RunTask.name(), run_task_options(&a)?, &a.input)?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let req: RunTaskRequest = super::aws::decode(Op::RunTask.name(), req)?;
    let name = match req.task_definition.strip_prefix("file://") {
        Some(_) => crate::taskdef::Source::from_arg(&req.task_definition).display_name(),
        None => req.task_definition.clone(),
    };
    let started = match ecs_tasks::run_task(&ecs, req, local) {
        Ok(started) => started,
        Err(EcsError::InvalidTaskDefinition { message, findings }) => {
            // Every finding, not just the first the message names, as validate prints them.
            super::taskdefs::print_findings(&name, findings.iter().filter(|f| f.is_error()));
            return Err(EcsError::Client(message).into());
        }
        Err(e) => return Err(e.into()),
    };
    finish(g, started, a.detach, a.timeline, &a.output)
}

fn family_for(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let base = last.split(['@', ':']).next().unwrap_or(last);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        "container".into()
    } else {
        clean
    }
}

pub fn run(g: &GlobalOpts, a: RunArgs) -> anyhow::Result<ExitCode> {
    let ecs = g.ecs();
    let mut local = Local {
        env_file: read_env_files(&a.env_file)?,
        pull: a.pull,
        follow: !a.detach,
        ..Default::default()
    };
    // Its exec and start overlap what follows (ecs::tasks::prestart).
    local.early = ecs_tasks::prestart(&ecs, &local);
    let name = a.name.clone().unwrap_or_else(|| family_for(&a.image));
    let mut env = Vec::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("-e {kv:?}: use KEY=VALUE");
        };
        env.push(serde_json::json!({"name": k, "value": v}));
    }
    let mut c = serde_json::json!({"name": name, "image": a.image, "essential": true});
    if !a.command.is_empty() {
        c["command"] = serde_json::json!(a.command);
    }
    if !env.is_empty() {
        c["environment"] = serde_json::json!(env);
    }
    if !a.publish.is_empty() {
        c["portMappings"] = serde_json::Value::Array(
            a.publish
                .iter()
                .map(|p| publish_mapping(p))
                .collect::<anyhow::Result<_>>()?,
        );
    }
    // Like `docker run --memory`: the container's hard limit (and the task's).
    if let Some(m) = a.memory {
        c["memory"] = serde_json::json!(m);
    }
    let (volumes, mount_points) = run_volumes(&a.volume)?;
    if !mount_points.is_empty() {
        c["mountPoints"] = serde_json::json!(mount_points);
    }
    let mut def = serde_json::json!({
        "family": format!("run-{}", family_for(&a.image)),
        "networkMode": a.network,
        "containerDefinitions": [c],
    });
    if !volumes.is_empty() {
        def["volumes"] = serde_json::json!(volumes);
    }
    if let Some(cpu) = a.cpu {
        def["cpu"] = serde_json::json!(cpu.to_string());
    }
    if let Some(m) = a.memory {
        def["memory"] = serde_json::json!(m.to_string());
    }
    let def: taskdef::TaskDefinition = serde_json::from_value(def)?;
    let started = ecs_tasks::run_unregistered(&ecs, &def, &a.cluster, local)?;
    finish(
        g,
        started,
        a.detach,
        a.timeline,
        &super::aws::OutputOpts::default(),
    )
}

/// `-v` arguments as task definition `volumes` and `mountPoints`.
fn run_volumes(
    args: &[String],
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<serde_json::Value>)> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, v) in args.iter().enumerate() {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dest, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => bail!("-v {v:?}: use SRC:DEST[:ro]"),
        };
        if src.is_empty() || !dest.starts_with('/') {
            bail!("-v {v:?}: SRC must not be empty and DEST must be an absolute path");
        }
        let name = if src.starts_with('/') {
            volumes.push(serde_json::json!({"name": format!("v{i}"), "host": {"sourcePath": src}}));
            format!("v{i}")
        } else {
            if !volumes.iter().any(|v| v["name"] == src) {
                volumes.push(serde_json::json!({"name": src, "dockerVolumeConfiguration":
                    {"scope": "shared", "autoprovision": true, "driver": "local"}}));
            }
            src.to_string()
        };
        mounts
            .push(serde_json::json!({"sourceVolume": name, "containerPath": dest, "readOnly": ro}));
    }
    Ok((volumes, mounts))
}

/// `-p HOST:CONTAINER[/udp]` (or `CONTAINER[/udp]`) as an ECS `portMappings` entry.
fn publish_mapping(p: &str) -> anyhow::Result<serde_json::Value> {
    let (ports, proto) = match p.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, "tcp"),
        Some((ports, "udp")) => (ports, "udp"),
        Some((_, other)) => bail!("-p {p:?}: protocol {other:?} is not tcp or udp"),
        None => (p, "tcp"),
    };
    let num = |s: &str| {
        s.parse::<u16>()
            .with_context(|| format!("-p {p:?}: {s:?} is not a port number"))
    };
    let (host, container) = match ports.split_once(':') {
        Some((h, c)) => (Some(num(h)?), num(c)?),
        None => (None, num(ports)?),
    };
    if container == 0 {
        bail!("-p {p:?}: the container port must be 1-65535");
    }
    let mut m = serde_json::json!({"containerPort": container, "protocol": proto});
    if let Some(h) = host {
        m["hostPort"] = serde_json::json!(h);
    }
    Ok(m)
}

/// Prints the RunTask response (`detach`) or follows the tasks until they stop.
fn finish(
    g: &GlobalOpts,
    started: Started,
    detach: bool,
    timeline: bool,
    output: &super::aws::OutputOpts,
) -> anyhow::Result<ExitCode> {
    for w in &started.warnings {
        eprintln!("warning: {}", w.message);
    }
    // Tasks placement refused (ECS's RunTask failures): said on stderr, and a run that
    // started nothing fails.
    for f in &started.response.failures {
        eprintln!(
            "error: a task was not started: {} (container instance {})",
            f.reason, f.arn
        );
    }
    let none_started = started.ids.is_empty() && !started.response.failures.is_empty();
    if detach || none_started {
        super::aws::print_response(Op::RunTask.name(), &started.response, output)?;
        // The supervisors outlive us (they are in their own sessions).
        return Ok(if none_started {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let Started {
        ids,
        supervisors,
        mut store,
        ..
    } = started;
    let store = &mut store;
    let code = attach(g, store, &ids, supervisors)?;
    if timeline {
        for id in &ids {
            eprint!("{}", timeline_text(store, id)?);
        }
    }
    Ok(code)
}

struct Stream {
    prefix: String,
    path: std::path::PathBuf,
    follower: Option<LogFollower>,
}

const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

/// Follows the tasks' container logs until every task is STOPPED; Ctrl-C stops them.
fn attach(
    g: &GlobalOpts,
    store: &mut Store,
    ids: &[String],
    children: Vec<launch::Supervisor>,
) -> anyhow::Result<ExitCode> {
    let interrupts = ctrl_c()?;
    let (exited_rx, mut finished) = wait_for_supervisors(children)?;
    let mut woken = false;
    let mut supervisor_exited = false;
    let mut streams = log_streams(g, store, ids)?;
    let mut seen_interrupts = 0;
    let mut last_check = Instant::now() - Duration::from_secs(1);
    let mut out = std::io::stdout().lock();
    loop {
        let mut printed = false;
        for s in &mut streams {
            drain(s, &mut out, &mut printed);
        }
        out.flush().ok();
        let now_interrupts = interrupts.load(Ordering::SeqCst);
        if now_interrupts > seen_interrupts {
            seen_interrupts = now_interrupts;
            ask_stop(g, ids, now_interrupts > 1);
        }
        if woken || last_check.elapsed() >= Duration::from_millis(25) {
            woken = false;
            last_check = Instant::now();
            if all_stopped(store, ids)? {
                break;
            }
            if std::mem::take(&mut supervisor_exited) {
                // A supervisor exited and its task is not STOPPED: it died. Dead supervisors
                // only: no pruning of the tasks we follow.
                if let Err(e) = crate::supervisor::reconcile::reconcile(store, &g.root, &g.run_root)
                {
                    tracing::error!(error = %crate::errors::error_chain(&e), "failed to check task supervisors");
                }
                if all_stopped(store, ids)? {
                    break;
                }
            }
        }
        if !printed {
            match exited_rx.recv_timeout(Duration::from_millis(10)) {
                Ok((i, ended)) => {
                    woken = true;
                    finished[i] = true;
                    supervisor_exited |= ended == Ended::Exited;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                // Every supervisor has exited (and been reported): poll the store.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
            }
        }
    }
    // Every task is STOPPED; a supervisor may not have said it is done yet.
    while finished.contains(&false) {
        match exited_rx.recv() {
            Ok((i, _)) => finished[i] = true,
            // Every waiting thread has ended: every supervisor has exited.
            Err(_) => break,
        }
    }
    let mut printed = false;
    for s in &mut streams {
        drain(s, &mut out, &mut printed);
    }
    out.flush().ok();
    drop(out);
    exit_code(store, ids)
}

/// Counts the Ctrl-Cs from now on. The handler is registered here, before any output: a
/// Ctrl-C after the first line can never hit the default action (which would leave the
/// task running unattended).
fn ctrl_c() -> anyhow::Result<Arc<AtomicUsize>> {
    let interrupts = Arc::new(AtomicUsize::new(0));
    let n = interrupts.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the signal handler")?;
    let mut sigint = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("failed to handle Ctrl-C")?
    };
    std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            rt.block_on(async {
                while sigint.recv().await.is_some() {
                    n.fetch_add(1, Ordering::SeqCst);
                }
            });
        })?;
    Ok(interrupts)
}

/// Starts the threads that wait for each supervisor; the channel they report on, and
/// which supervisors have (none yet).
#[allow(clippy::type_complexity)]
fn wait_for_supervisors(
    children: Vec<launch::Supervisor>,
) -> anyhow::Result<(std::sync::mpsc::Receiver<(usize, Ended)>, Vec<bool>)> {
    // Threads wait for each supervisor: the loop below sleeps on this channel, so the end
    // wakes it at once instead of at the next poll of the store. The supervisor says so on
    // its done pipe right after it wrote STOPPED (its last teardown step done), a few
    // milliseconds before its process has ended (launch::Supervisor::done); a second
    // thread waits for the process to exit, which tells the loop to check whether it died
    // first. The CLI returns once every task is STOPPED and each supervisor has said it is
    // done or has exited.
    let (exited_tx, exited_rx) = std::sync::mpsc::channel::<(usize, Ended)>();
    let finished = vec![false; children.len()];
    for (i, mut sup) in children.into_iter().enumerate() {
        if let Some(mut done) = sup.done.take() {
            let tx = exited_tx.clone();
            std::thread::Builder::new()
                .name("supervisor-done".into())
                .spawn(move || {
                    let mut b = [0u8; 1];
                    if matches!(done.read(&mut b), Ok(1)) {
                        let _ = tx.send((i, Ended::Done));
                    }
                })?;
        }
        let tx = exited_tx.clone();
        std::thread::Builder::new()
            .name("supervisor-wait".into())
            .spawn(move || {
                // Reaped here, or by init should this process exit first.
                let _ = sup.child.wait();
                let _ = tx.send((i, Ended::Exited));
            })?;
    }
    drop(exited_tx);
    Ok((exited_rx, finished))
}

/// The log of each container of the tasks, with its prefix (`task/container` when there
/// are several tasks), aligned and coloured on a terminal.
fn log_streams(g: &GlobalOpts, store: &Store, ids: &[String]) -> anyhow::Result<Vec<Stream>> {
    let colour = std::io::stdout().is_terminal();
    let mut streams = Vec::new();
    for id in ids {
        let (_, containers) = store.task(id)?.context("task vanished from the store")?;
        let paths = TaskPaths::new(&g.root, &g.run_root, id);
        for c in containers {
            let name = if ids.len() > 1 {
                format!("{}/{}", &id[..8], c.name)
            } else {
                c.name.clone()
            };
            streams.push(Stream {
                prefix: name,
                path: paths.log(&c.name),
                follower: None,
            });
        }
    }
    let width = streams.iter().map(|s| s.prefix.len()).max().unwrap_or(0);
    for (i, s) in streams.iter_mut().enumerate() {
        let p = format!("{:<width$} |", s.prefix);
        s.prefix = if colour {
            format!("\x1b[{}m{p}\x1b[0m ", COLOURS[i % COLOURS.len()])
        } else {
            format!("{p} ")
        };
    }
    Ok(streams)
}

/// A Ctrl-C: the tasks are asked to stop (killed, with `force`: a second Ctrl-C).
fn ask_stop(g: &GlobalOpts, ids: &[String], force: bool) {
    eprintln!(
        "{}",
        if force {
            "Killing the task…"
        } else {
            "Stopping the task gracefully… (Ctrl-C again to kill it)"
        }
    );
    for id in ids {
        let client = Client::new(&TaskPaths::new(&g.root, &g.run_root, id), id);
        if let Err(e) = client.stop(StopCode::UserInitiated, stop::USER_REASON, force) {
            tracing::warn!(task_id = %id, error = %e, "failed to ask the supervisor to stop");
        }
    }
}

/// What a thread that waits for a supervisor (`supervisor-done`, `supervisor-wait`)
/// reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The supervisor said its task is STOPPED and torn down.
    Done,
    /// The supervisor process has exited.
    Exited,
}

fn all_stopped(store: &Store, ids: &[String]) -> anyhow::Result<bool> {
    for id in ids {
        let t = store.task(id)?.map(|(t, _)| t);
        if t.is_none_or(|t| t.last_status != LastStatus::Stopped) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn drain(s: &mut Stream, out: &mut impl Write, printed: &mut bool) {
    if s.follower.is_none() && s.path.exists() {
        s.follower = LogFollower::open(&s.path).ok();
    }
    let Some(f) = &mut s.follower else { return };
    while let Ok(Some(e)) = f.next_entry() {
        print_entry(out, &s.prefix, &e);
        *printed = true;
    }
}

/// The essential container's exit code; reasons of abnormal stops go to stderr.
fn exit_code(store: &Store, ids: &[String]) -> anyhow::Result<ExitCode> {
    let mut code: Option<i64> = None;
    for id in ids {
        let (t, containers) = store.task(id)?.context("task vanished from the store")?;
        for c in &containers {
            if let Some(r) = &c.reason {
                eprintln!("minifargate: container {}: {r}", c.name);
            }
        }
        if t.stop_code != Some(StopCode::EssentialContainerExited)
            && let Some(r) = &t.stopped_reason
        {
            eprintln!("minifargate: task {}: {r}", t.id);
        }
        if code.is_none() {
            // The essential container that exited first: the one that stopped the task.
            code = Some(
                containers
                    .iter()
                    .filter(|c| c.essential && c.exit_code.is_some())
                    .min_by_key(|c| c.finished_at.unwrap_or(i64::MAX))
                    .and_then(|c| c.exit_code)
                    .unwrap_or(1),
            );
        }
    }
    Ok(ExitCode::from(code.unwrap_or(1).clamp(0, 255) as u8))
}
