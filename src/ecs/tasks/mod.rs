//! Tasks: RunTask, DescribeTasks, ListTasks, StopTask. RunTask writes the tasks and starts
//! one supervisor process each (`crate::supervisor`), which owns its task from there; the
//! other operations read the store and talk to those supervisors. Each first notices tasks
//! whose supervisor died (see supervisor::reconcile).

mod run;
use super::clusters::{self, check_cluster};
use super::names::{self, cluster_name, task_id};
use super::shapes::{
    CapacityProviderStrategyItem, Failure, PlacementConstraint, PlacementStrategy, check_placement,
    platform_version,
};
use super::tags::{Tag, checked_tags, resource_of};
use super::task_definitions::resolve;
use super::{Ecs, EcsError, EcsResult, Warning, enum_member, page};
use crate::store::{
    ContainerRow, DesiredStatus, LastStatus, LaunchRecord, Resource, RunToken, StopCode, Store,
    StoredTaskDefinition, TaskFilter, TaskRow,
};
use crate::supervisor::launch::{self, SupervisorCommand};
use crate::supervisor::{Client, ClientError};
use crate::task::shape::{self, Task};
use crate::task::{PullPolicy, TaskOverride, TaskPaths, stop};
use crate::taskdef::{self, AwsContext, LaunchType};
use anyhow::Context;
use run::{
    checked_request, launch_notes, launch_request, launch_strategy, place_here, remember_token,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The RunTask request (ecs.json `RunTaskRequest`). Every member ECS defines is here, so
/// that none is dropped unseen: what this host does with each is in
/// `taskdef::coverage::RUN_TASK`, and the members it does not apply become task warnings.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTaskRequest {
    /// `default` when absent.
    pub cluster: Option<String>,
    pub task_definition: String,
    /// 1-10; 1 when absent.
    pub count: Option<u32>,
    #[serde(default)]
    pub overrides: TaskOverride,
    /// FARGATE or EC2.
    pub launch_type: Option<String>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub enable_execute_command: bool,
    /// `{"awsvpcConfiguration": {…}}`.
    pub network_configuration: Option<Value>,
    /// FARGATE / FARGATE_SPOT: launch type FARGATE, recorded as `capacityProviderName`.
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    /// Checked, recorded, and applied when the task is placed on this box's container
    /// instance (`super::on_box`); not for FARGATE (a task warning says so).
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    /// LATEST or a Fargate platform version; recorded, shown on the task.
    pub platform_version: Option<String>,
    /// TASK_DEFINITION copies the definition's tags to the task; NONE nothing.
    pub propagate_tags: Option<String>,
    pub reference_id: Option<String>,
    /// Adds `aws:ecs:clusterName` (and `aws:ecs:serviceName` for a service's task).
    #[serde(rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: Option<bool>,
    /// Idempotency: the same token and request within 24 hours → the same tasks.
    pub client_token: Option<String>,
    pub volume_configurations: Option<Value>,
}

/// Task warnings for the members of a RunTask request this host does not apply.
fn request_warnings(req: &RunTaskRequest) -> Vec<String> {
    let Ok(v) = serde_json::to_value(req) else {
        return Vec::new();
    };
    let findings = taskdef::coverage::findings(taskdef::coverage::RUN_TASK, &v);
    taskdef::coverage::task_warnings(&findings)
}

/// What a caller on this host adds to a RunTask: the CLI's local flags. The API passes
/// the default (nothing local).
#[derive(Debug, Default)]
pub struct Local {
    /// `file://` task definition references are read and registered first (the CLI on
    /// this host; never for a remote caller, who would read the server's files).
    pub files: bool,
    /// The request came over the API (`serve`): a task definition naming a local
    /// `environmentFiles` path is refused ([`super::no_local_environment_files`]).
    pub remote: bool,
    /// `--env-file` variables, under every container's own.
    pub env_file: Vec<taskdef::model::KeyValuePair>,
    /// `--volume-map NAME=/dir`: EFS/FSx volumes served from local directories.
    pub volume_map: std::collections::BTreeMap<String, PathBuf>,
    pub pull: PullPolicy,
    /// `--secrets-file` (absolute).
    pub secrets_file: Option<PathBuf>,
    /// `--task-credentials host`.
    pub host_credentials: bool,
    /// `--execution-credentials host`.
    pub host_execution_credentials: bool,
    /// The caller follows the tasks until they stop (the attached CLI, which starts no
    /// other process meanwhile): each supervisor reports on a pipe when its task is done.
    pub follow: bool,
    /// The service deployment the tasks belong to (the scheduler's): its tasks share
    /// image digests (versionConsistency), as the tasks of one RunTask call do otherwise.
    pub deployment: Option<String>,
    /// A supervisor started ahead for the first task ([`prestart`]): the CLI's.
    pub early: Option<launch::Waiting>,
}

/// For a caller that makes one launch and starts no other process meanwhile (the CLI's
/// `run-task` and `run`): a supervisor started now, before the request is checked, whose
/// exec and start then overlap the launch's checks and store writes instead of following
/// them; the first task is handed to it (`launch::hand_over`). Nothing when it cannot
/// start: the task's supervisor is then started the usual way.
pub fn prestart(ecs: &Ecs, local: &Local) -> Option<launch::Waiting> {
    let req = launch::Request {
        secrets_file: local.secrets_file.clone(),
        host_credentials: local.host_credentials,
        host_execution_credentials: local.host_execution_credentials,
        ..Default::default()
    };
    let started = supervisor_command(ecs, &req, local.pull, local.follow)
        .map_err(|e| crate::errors::error_chain(e.as_ref()))
        .and_then(|cmd| {
            launch::prestart_supervisor(&cmd).map_err(|e| crate::errors::error_chain(&e))
        });
    match started {
        Ok(w) => Some(w),
        Err(error) => {
            tracing::debug!(%error, "no supervisor started ahead");
            None
        }
    }
}

/// Tells the supervisor started ahead, if any, what it can do while this process places
/// the task and writes its rows. First the images its task will have checked
/// (`images_to_check_ahead`, `launch::Waiting::announce_images`), so that it asks their
/// registries at once: that round trip is the longest of what it does ahead
/// (docs/benchmarks.md, "Stop 55"); not for a service deployment's tasks, whose pinned
/// digests the supervisor reads once the task is written. Then the id the task will have
/// and its number of containers, for its cgroups (`launch::Waiting::announce_cgroups`).
fn announce_ahead(local: &mut Local, def: &taskdef::TaskDefinition) {
    let Some(w) = &mut local.early else { return };
    if local.deployment.is_none()
        && let Some(images) = crate::supervisor::executor::images_to_check_ahead(def, local.pull)
    {
        let platform = crate::supervisor::isolation::platform::wanted_platform(def);
        w.announce_images(&platform, &images);
    }
    w.announce_cgroups(def.container_definitions.as_ref().map_or(0, Vec::len));
}

/// The RunTask response: `{"tasks": […], "failures": []}`.
#[derive(Debug, Serialize)]
pub struct RunTaskResponse {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

/// Tasks whose supervisors were started: the response, the warnings on the way, and the
/// supervisor processes (the caller waits for them, or leaves them to init when it exits).
pub struct Started {
    pub response: RunTaskResponse,
    /// The store connection the tasks were written with, for a caller that follows them.
    pub store: Store,
    pub ids: Vec<String>,
    pub warnings: Vec<Warning>,
    pub supervisors: Vec<launch::Supervisor>,
}

impl Started {
    /// No task started: the answer is `failures`.
    pub fn none(store: Store, failures: Vec<Failure>) -> Started {
        Started {
            response: RunTaskResponse {
                tasks: Vec::new(),
                failures,
            },
            store,
            ids: Vec::new(),
            warnings: Vec::new(),
            supervisors: Vec::new(),
        }
    }
}

/// ECS's cap on the size of RunTask `overrides`.
/// Ref: API_RunTask, `overrides`: "A total of 8192 characters are allowed for overrides.
/// This limit includes the JSON formatting characters of the override structure."; the
/// message is ECS's as callers report it (Netflix/metaflow#977).
fn check_overrides_size(o: &TaskOverride) -> EcsResult<()> {
    const MAX: usize = 8192;
    let len = serde_json::to_string(o).map_or(0, |s| s.chars().count());
    if len > MAX {
        return Err(EcsError::invalid(format!(
            "Container Overrides length must be at most {MAX} (the overrides are {len} \
             characters of JSON; put large values in environmentFiles or secrets)"
        )));
    }
    Ok(())
}

/// An `environmentFiles` override names S3 objects (ECS's rule): a local path is read on
/// this host only for its own CLI, never for a remote caller (who would read the server's
/// files into a container).
fn no_local_environment_files(o: &TaskOverride) -> EcsResult<()> {
    for (i, co) in o.container_overrides.iter().enumerate() {
        for (k, f) in co.environment_files.iter().flatten().enumerate() {
            let value = f.value.as_deref().unwrap_or_default();
            if !crate::supervisor::envfiles::is_s3(value, f.kind) {
                return Err(EcsError::invalid(format!(
                    "overrides.containerOverrides[{i}].environmentFiles[{k}].value {value:?}: \
                     not an S3 object ARN (arn:aws:s3:::<bucket>/<key>.env); local files are a \
                     CLI convenience"
                )));
            }
        }
    }
    Ok(())
}

/// The launch type a request names.
fn launch_type_str(l: LaunchType) -> &'static str {
    match l {
        LaunchType::Fargate => "FARGATE",
        LaunchType::Ec2 => "EC2",
    }
}

/// How long ECS remembers a RunTask clientToken. Ref: docs.aws.amazon.com/AmazonECS/latest/
/// APIReference/ECS_Idempotency.html ("The RunTask client token has a time to live (TTL)
/// of 24 hours").
const CLIENT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

/// Ref: ecs.json `RunTaskRequest.clientToken`: "Up to 64 characters are allowed. The valid
/// characters are characters in the range of 33-126, inclusive."
pub(super) fn check_client_token(t: Option<&str>) -> EcsResult<()> {
    let Some(t) = t else { return Ok(()) };
    if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(EcsError::invalid(format!(
            "clientToken {t:?}: up to 64 characters in the range 33-126 (printable ASCII \
             without spaces)"
        )));
    }
    Ok(())
}

/// The capacity provider of each of `count` tasks: a provider's `base` first, then the
/// rest by `weight` (each next task to the provider furthest below its share). Ref: ecs.json
/// `CapacityProviderStrategyItem` ("Base satisfaction … Weight distribution").
pub fn distribute(strategy: &[CapacityProviderStrategyItem], count: u32) -> Vec<String> {
    let mut out = Vec::new();
    if strategy.is_empty() {
        return out;
    }
    if let Some(b) = strategy.iter().find(|s| s.base > 0) {
        for _ in 0..b.base.min(i64::from(count)) {
            out.push(b.capacity_provider.clone());
        }
    }
    let total: i64 = strategy.iter().map(|s| s.weight).sum();
    let mut given = vec![0i64; strategy.len()];
    let mut k = 0i64;
    while out.len() < count as usize && total > 0 {
        k += 1;
        // The provider whose share of k tasks (weight/total) is furthest ahead of what it got.
        let (i, _) = strategy
            .iter()
            .enumerate()
            .filter(|(_, s)| s.weight > 0)
            .map(|(i, s)| (i, s.weight * k - given[i] * total))
            .max_by_key(|&(i, d)| (d, std::cmp::Reverse(i)))
            .expect("a provider with a weight");
        given[i] += 1;
        out.push(strategy[i].capacity_provider.clone());
    }
    out
}

/// What a RunTask request asks for (without its clientToken), in `cluster`, as JSON text:
/// two requests are the same when their texts are.
fn request_digest(req: &RunTaskRequest, cluster: &str) -> String {
    let mut r = req.clone();
    r.client_token = None;
    r.cluster = Some(cluster.to_string());
    serde_json::to_string(&r).unwrap_or_default()
}

/// The tags a task starts with: the request's, the task definition's with propagateTags
/// TASK_DEFINITION (a key the request sets keeps the request's value), and ECS's managed
/// tags. Ref: docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-using-tags.html
/// (Amazon ECS managed tags: `aws:ecs:clusterName`, and `aws:ecs:serviceName` for a
/// service's tasks).
fn task_tags(
    store: &Store,
    req: &RunTaskRequest,
    stored: &StoredTaskDefinition,
    cluster: &str,
) -> EcsResult<Vec<Tag>> {
    let mut tags = req.tags.clone();
    let add = |tags: &mut Vec<Tag>, key: &str, value: &str| {
        if !tags.iter().any(|t| t.key == key) {
            tags.push(Tag {
                key: key.into(),
                value: value.into(),
            });
        }
    };
    if req.propagate_tags.as_deref() == Some("TASK_DEFINITION") {
        let arn = stored
            .definition
            .task_definition_arn
            .clone()
            .unwrap_or_default();
        if let Ok(r @ Resource::TaskDefinition(..)) = resource_of(&arn) {
            for t in store
                .resource_tags(&r)
                .map_err(anyhow::Error::from)?
                .unwrap_or_default()
            {
                add(&mut tags, &t.key, &t.value);
            }
        }
    }
    if req.enable_ecs_managed_tags == Some(true) {
        add(&mut tags, "aws:ecs:clusterName", cluster);
        if let Some(service) = req
            .group
            .as_deref()
            .and_then(|g| g.strip_prefix("service:"))
        {
            add(&mut tags, "aws:ecs:serviceName", service);
        }
    }
    Ok(tags)
}

/// RunTask: resolves the task definition, checks the cluster (and the launch type's
/// rules), writes the tasks and starts one supervisor each.
pub fn run_task(ecs: &Ecs, req: RunTaskRequest, local: Local) -> EcsResult<Started> {
    run_task_with(ecs, req, local, &ThisBox)
}

/// RunTask with the tasks started by `launcher` once the request is checked: this box,
/// or a cluster's boxes (`serve --cluster`).
pub fn run_task_with(
    ecs: &Ecs,
    req: RunTaskRequest,
    mut local: Local,
    launcher: &dyn Launcher,
) -> EcsResult<Started> {
    let request_warnings = request_warnings(&req);
    let (count, mut launch_type, network_configuration) = checked_request(&req, &local)?;
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    let cluster = clusters::for_run(
        &mut store,
        &ctx,
        super::cluster_or_default(req.cluster.as_deref()),
    )?;
    // Idempotency. Ref: ECS_Idempotency.html: the same token and parameters return the
    // original result; the same token with other parameters fails with ConflictException;
    // tokens are per cluster.
    let digest = request_digest(&req, &cluster);
    let now = super::now_ms();
    if let Some(token) = &req.client_token
        && let Some(used) = claimed(&mut store, &cluster, token, &digest, now)?
    {
        return launcher.replay(ecs, store, &used);
    }
    let token = req.client_token.clone();
    let launched = (|| -> EcsResult<(Started, Vec<Warning>)> {
        let strategy = launch_strategy(&store, &req, &cluster, &mut launch_type)?;
        let providers = distribute(&strategy, count);
        let resolved =
            resolve(&mut store, &req.task_definition, &ctx, launch_type).with_context(|| {
                format!("failed to resolve task definition {}", req.task_definition)
            })?;
        if local.remote {
            super::no_local_environment_files(&resolved.stored.definition)?;
        }
        announce_ahead(&mut local, &resolved.stored.definition);
        check_constraint_count(
            req.placement_constraints.as_deref().unwrap_or_default(),
            &resolved.stored,
        )?;
        // The coverage warnings of the definition are the task's own (with their paths).
        let warnings: Vec<Warning> = resolved
            .warnings
            .iter()
            .filter(|w| !taskdef::coverage::is_coverage_rule(w.rule))
            .map(|w| Warning {
                message: w.message.clone(),
            })
            .collect();
        let def_fargate = resolved
            .stored
            .definition
            .requires_compatibilities
            .iter()
            .flatten()
            .any(|c| *c == taskdef::model::Compatibility::Fargate);
        let fargate = launch_type.map_or(def_fargate, |l| l == LaunchType::Fargate);
        let platform_version = platform_version(req.platform_version.as_deref(), fargate)?;
        let mut request_warnings = request_warnings;
        launch_notes(
            &req,
            fargate,
            platform_version.as_deref(),
            &mut request_warnings,
        );
        // What Fargate would refuse, launchType FARGATE refuses too (RunTask's exception).
        if launch_type == Some(LaunchType::Fargate) {
            fargate_check(&req.task_definition, &resolved.stored)?;
        }
        let tags = task_tags(&store, &req, &resolved.stored, &cluster)?;
        let supervision = Supervision {
            pull: local.pull,
            follow: local.follow,
            early: local.early.take(),
        };
        let launch = launch_request(
            &req,
            local,
            (&cluster, launch_type, tags),
            network_configuration,
            (request_warnings, platform_version),
        );
        let on_this_box = launcher.on_this_box();
        let here = (count, fargate, on_this_box);
        let (count, failures, _lock) =
            place_here(ecs, &mut store, (&req, &cluster, &resolved.stored), here)?;
        if count == 0 {
            return Ok((Started::none(store, failures), warnings));
        }
        let mut started = launcher.launch(
            ecs,
            store,
            &ctx,
            &resolved.stored,
            &launch,
            count,
            &providers,
            supervision,
        )?;
        started.response.failures.extend(failures);
        Ok((started, warnings))
    })();
    let (mut started, mut warnings) = match launched {
        Ok(l) => l,
        Err(e) => {
            // A claimed token is given up, so a retry runs again.
            if let Some(token) = &token
                && let Err(err) = ecs
                    .open_store()
                    .and_then(|mut s| Ok(s.release_run_token(&cluster, token)?))
            {
                tracing::warn!(error = %err, "failed to release a RunTask client token");
            }
            return Err(e);
        }
    };
    remember_token(&mut started, &cluster, token, (digest, now))?;
    warnings.append(&mut started.warnings);
    started.warnings = warnings;
    Ok(started)
}

/// ECS's limit on a task's placement constraints, the task definition's included. Ref:
/// ecs.json `RunTaskRequest.placementConstraints` ("You can specify up to 10 constraints for
/// each task (including constraints in the task definition and those specified at
/// runtime)"), the same for `CreateServiceRequest`.
pub fn check_constraint_count(
    asked: &[super::shapes::PlacementConstraint],
    stored: &StoredTaskDefinition,
) -> EcsResult<()> {
    let defined = stored
        .definition
        .placement_constraints
        .as_deref()
        .map_or(0, <[_]>::len);
    if asked.len() + defined > 10 {
        return Err(EcsError::invalid(format!(
            "placementConstraints: {} given and {defined} in task definition {}:{}; at most 10 \
             per task, the task definition's included",
            asked.len(),
            stored.family(),
            stored.revision()
        )));
    }
    Ok(())
}

/// Claims RunTask clientToken `token` for request `digest` (`None`: this call runs), or
/// the task ARNs of the call that used it with the same request. Ref: ECS_Idempotency.html:
/// the same token and parameters return the original result; the same token with other
/// parameters fails with ConflictException; tokens are per cluster. A call still starting
/// its tasks is waited for (up to a minute), so two concurrent calls start tasks once.
fn claimed(
    store: &mut Store,
    cluster: &str,
    token: &str,
    digest: &str,
    now: i64,
) -> EcsResult<Option<Vec<String>>> {
    let since = now - CLIENT_TOKEN_TTL_MS;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let Some(used) = store
            .claim_run_token(cluster, token, digest, now, since)
            .map_err(anyhow::Error::from)?
        else {
            return Ok(None);
        };
        if used.request != digest {
            return Err(EcsError::Conflict(format!(
                "clientToken {token:?} was already used in cluster {cluster} with different \
                 parameters (its tasks: {}); use a new token for a different request",
                used.task_arns.join(", ")
            )));
        }
        if !used.task_arns.is_empty() {
            return Ok(Some(used.task_arns));
        }
        if std::time::Instant::now() > deadline {
            return Err(EcsError::Conflict(format!(
                "clientToken {token:?}: the RunTask that first used it in cluster {cluster} is \
                 still starting its tasks; retry later"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The answer to a RunTask retried with its clientToken: `tasks`, those the first call
/// started (as they are now), and nothing started.
pub fn replayed(store: Store, tasks: Vec<Task>) -> Started {
    let ids = tasks
        .iter()
        .map(|t| task_id(&t.task_arn).to_string())
        .collect();
    Started {
        response: RunTaskResponse {
            tasks,
            failures: Vec::new(),
        },
        store,
        ids,
        warnings: Vec::new(),
        supervisors: Vec::new(),
    }
}

/// A task definition launch type FARGATE must satisfy: every Fargate rule, refused with
/// every finding (RunTask's ClientException).
pub(crate) fn fargate_check(reference: &str, stored: &StoredTaskDefinition) -> EcsResult<()> {
    let parsed = taskdef::Parsed {
        shape: taskdef::Shape::RegisterInput,
        def: stored.definition.clone(),
        findings: Vec::new(),
        dropped: Vec::new(),
    };
    let report = taskdef::validate::validate(
        &parsed,
        &taskdef::validate::Options {
            launch_type: Some(LaunchType::Fargate),
            template: false,
        },
    );
    if report.valid {
        return Ok(());
    }
    let errors: Vec<_> = report
        .findings
        .into_iter()
        .filter(|f| f.severity == taskdef::Severity::Error)
        .collect();
    Err(EcsError::InvalidTaskDefinition {
        message: format!(
            "task definition {reference} cannot run with launch type FARGATE: {} error(s) (first: \
             {})",
            report.errors,
            errors.first().map(|f| f.to_string()).unwrap_or_default()
        ),
        findings: errors,
    })
}

/// Starts one task of an ad-hoc task definition, registered as the next revision of its
/// family without ECS's validation: `run IMAGE` (a `docker run`, which ECS has no call
/// for) on the EC2 launch type.
pub fn run_unregistered(
    ecs: &Ecs,
    def: &taskdef::TaskDefinition,
    cluster: &str,
    mut local: Local,
) -> EcsResult<Started> {
    let ctx = AwsContext::from_env();
    let def = taskdef::normalize::for_register(def);
    announce_ahead(&mut local, &def);
    let mut store = ecs.open_store()?;
    let cluster = clusters::for_run(&mut store, &ctx, cluster)?;
    let stored = store
        .register_task_definition(&def, &[], &ctx, chrono::Utc::now())
        .context("failed to register the task definition of `run`")?;
    let launch = launch::Request {
        cluster,
        launch_type: Some("EC2".into()),
        env_file: local.env_file,
        ..Default::default()
    };
    let supervision = Supervision {
        pull: local.pull,
        follow: local.follow,
        early: local.early,
    };
    Ok(spawn(
        ecs,
        store,
        &ctx,
        &stored,
        &launch,
        1,
        &[],
        supervision,
    )?)
}

/// How supervisors are started: their image pull policy, whether the caller follows
/// the tasks to their end (see [`Local::follow`]), and the supervisor started ahead for
/// the first task, if any ([`Local::early`]).
#[derive(Debug)]
pub struct Supervision {
    pub pull: PullPolicy,
    pub follow: bool,
    pub early: Option<launch::Waiting>,
}

/// Where RunTask's checked tasks start.
pub trait Launcher {
    /// Whether its tasks run on this box (which RunTask then places them on first).
    fn on_this_box(&self) -> bool {
        false
    }

    /// The answer to a RunTask retried with its clientToken: the tasks `arns` the first
    /// call started, as they are now, read where this launcher keeps them (this box's
    /// store by default).
    fn replay(&self, _ecs: &Ecs, store: Store, arns: &[String]) -> EcsResult<Started> {
        let tasks = arns
            .iter()
            .filter_map(|a| task_by_id(&store, task_id(a)).transpose())
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(replayed(store, tasks))
    }

    /// Starts `count` tasks of `stored` as `req` says; task `i` on capacity provider
    /// `providers[i]` when given.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        ecs: &Ecs,
        store: Store,
        ctx: &AwsContext,
        stored: &StoredTaskDefinition,
        req: &launch::Request,
        count: u32,
        providers: &[String],
        sup: Supervision,
    ) -> EcsResult<Started>;
}

/// This box: one supervisor process per task.
pub struct ThisBox;

impl Launcher for ThisBox {
    fn on_this_box(&self) -> bool {
        true
    }

    fn launch(
        &self,
        ecs: &Ecs,
        store: Store,
        ctx: &AwsContext,
        stored: &StoredTaskDefinition,
        req: &launch::Request,
        count: u32,
        providers: &[String],
        sup: Supervision,
    ) -> EcsResult<Started> {
        Ok(spawn(ecs, store, ctx, stored, req, count, providers, sup)?)
    }
}

/// Writes a task prepared elsewhere (cluster mode: by the placer, with its ids) and starts
/// its supervisor, detached; a thread reaps the supervisor when it exits.
pub fn start_prepared(
    ecs: &Ecs,
    ctx: &AwsContext,
    prepared: &launch::Prepared,
    pull: PullPolicy,
) -> anyhow::Result<()> {
    let began = super::now_ms();
    let mut store = ecs.open_store()?;
    let cmd = supervisor_command(ecs, &launch::Request::default(), pull, false)?;
    launch::insert_task(&mut store, ctx, prepared, &ecs.root)?;
    let mut sup = launch::spawn_supervisor(&mut store, &cmd, &prepared.task.id)?;
    std::thread::spawn(move || sup.child.wait());
    ecs.housekeeping_before(&mut store, began);
    Ok(())
}

/// How `ecs`'s supervisors are started for tasks launched as `req` says.
fn supervisor_command(
    ecs: &Ecs,
    req: &launch::Request,
    pull: PullPolicy,
    report_done: bool,
) -> anyhow::Result<SupervisorCommand> {
    Ok(SupervisorCommand {
        exe: std::env::current_exe().context("failed to find the minifargate binary")?,
        root: ecs.root.clone(),
        run_root: ecs.run_root.clone(),
        config: ecs.config.clone(),
        log_level: ecs.log_level.clone(),
        userns: ecs.userns,
        pull,
        secrets_file: req.secrets_file.clone(),
        host_credentials: req.host_credentials,
        host_execution_credentials: req.host_execution_credentials,
        report_done,
    })
}

/// Starts `count` tasks; task `i` is placed on capacity provider `providers[i]` when given.
#[allow(clippy::too_many_arguments)]
fn spawn(
    ecs: &Ecs,
    mut store: Store,
    ctx: &AwsContext,
    stored: &StoredTaskDefinition,
    req: &launch::Request,
    count: u32,
    providers: &[String],
    mut sup: Supervision,
) -> anyhow::Result<Started> {
    // Housekeeping waits until the supervisors are started (below).
    let began = super::now_ms();
    let cmd = supervisor_command(ecs, req, sup.pull, sup.follow)?;
    // versionConsistency: the tasks of one RunTask call (or of one service deployment)
    // run one digest per container, whichever resolves the tag first.
    let mut req = req.clone();
    if req.image_scope.is_none() {
        let run = crate::task::new_id().context("failed to read /dev/urandom")?;
        req.image_scope = Some(format!("run/{run}"));
    }
    let req = &req;
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    let mut supervisors = Vec::new();
    for i in 0..count as usize {
        let mut one = req.clone();
        one.launch.capacity_provider_name = providers.get(i).cloned();
        // The first task goes to the supervisor started ahead, under the id it was told.
        let ahead = match (i, &sup.early) {
            (0, Some(w)) => w.ahead_id().map(str::to_string),
            _ => None,
        };
        let id = launch::create_task(&mut store, ctx, stored, &one, &ecs.root, ahead.as_deref())?;
        // The answer shows the task as written (PROVISIONING, its ENI PRECREATED), as
        // ECS's does: read before its supervisor can move it on. A failed read fails the
        // call once the task has its supervisor, not before (no task left unsupervised).
        let written = task_by_id(&store, &id);
        crate::task::test_pause(&ecs.run_root, "launch");
        supervisors.push(match sup.early.take() {
            Some(waiting) => launch::hand_over(&mut store, &cmd, waiting, &id)?,
            None => launch::spawn_supervisor(&mut store, &cmd, &id)?,
        });
        tasks.extend(written?);
        ids.push(id);
    }
    ecs.housekeeping_before(&mut store, began);
    // Every task of one RunTask has the same definition, so the same warnings.
    let warnings: Vec<Warning> = tasks
        .first()
        .map(|t| t.minifargate_warnings.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|message| Warning { message })
        .collect();
    for w in &warnings {
        tracing::info!(warning = %w.message, "RunTask");
    }
    Ok(Started {
        response: RunTaskResponse {
            tasks,
            failures: Vec::new(),
        },
        store,
        ids,
        warnings,
        supervisors,
    })
}

/// Where a request without a cluster looks for its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// ECS's rule: the `default` cluster.
    DefaultCluster,
    /// Every cluster (the CLI's `describe-tasks` and `stop-task` without `--cluster`,
    /// where a task id is enough).
    AnyCluster,
}

/// The cluster a task operation is limited to, if any.
fn scope(cluster: Option<&str>, unset: Unset) -> Option<&str> {
    match (cluster.filter(|c| !c.is_empty()), unset) {
        (Some(c), _) => Some(c),
        (None, Unset::DefaultCluster) => Some(names::DEFAULT),
        (None, Unset::AnyCluster) => None,
    }
}

/// Task `task` (an id or ARN), in `cluster` (a name or ARN) when one is given, with its
/// containers; a clear error when there is none.
pub fn find_task(
    store: &Store,
    task: &str,
    cluster: Option<&str>,
) -> anyhow::Result<(TaskRow, Vec<ContainerRow>)> {
    store
        .task(task_id(task))?
        .filter(|(t, _)| cluster.is_none_or(|c| cluster_name(c) == t.cluster))
        .ok_or_else(|| anyhow::anyhow!("task {task} not found (see `minifargate list-tasks`)"))
}

/// The ECS `Task` of task `id`, if there is one.
pub fn task_by_id(store: &Store, id: &str) -> anyhow::Result<Option<Task>> {
    let Some((t, containers)) = store.task(id)? else {
        return Ok(None);
    };
    let net = store.task_network(id)?;
    Ok(Some(shape::task(&t, &containers, net.as_ref())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTasksRequest {
    pub cluster: Option<String>,
    pub tasks: Vec<String>,
    /// `TAGS` includes the tasks' tags (left empty otherwise, as ECS does).
    #[serde(default)]
    pub include: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DescribeTasksResponse {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

/// DescribeTasks.
pub fn describe_tasks(
    ecs: &Ecs,
    req: &DescribeTasksRequest,
    unset: Unset,
) -> EcsResult<DescribeTasksResponse> {
    let cluster = scope(req.cluster.as_deref(), unset);
    let include_tags = req.include.iter().any(|s| s == "TAGS");
    let mut store = ecs.open_store()?;
    if let Some(c) = cluster {
        check_cluster(&store, c)?;
    }
    let ids: Vec<&str> = req.tasks.iter().map(|t| task_id(t)).collect();
    ecs.reconcile_tasks(&mut store, &ids);
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for t in &req.tasks {
        let found = store
            .task(task_id(t))
            .map_err(anyhow::Error::from)?
            .filter(|(row, _)| cluster.is_none_or(|c| cluster_name(c) == row.cluster));
        match found {
            Some((row, containers)) => {
                let net = store.task_network(&row.id).map_err(anyhow::Error::from)?;
                let mut task = shape::task(&row, &containers, net.as_ref());
                if !include_tags {
                    task.tags.clear();
                }
                tasks.push(task)
            }
            None => failures.push(Failure::missing(t.clone())),
        }
    }
    Ok(DescribeTasksResponse { tasks, failures })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksRequest {
    pub cluster: Option<String>,
    pub family: Option<String>,
    /// RUNNING (default), PENDING or STOPPED.
    pub desired_status: Option<String>,
    pub started_by: Option<String>,
    /// The service's tasks (its group `service:NAME`).
    pub service_name: Option<String>,
    /// EC2, FARGATE, EXTERNAL or MANAGED_INSTANCES.
    pub launch_type: Option<String>,
    /// An id or ARN: this host is the one container instance of each cluster, where every
    /// task that is not FARGATE runs.
    pub container_instance: Option<String>,
    /// Daemons are not a resource of this host: no task belongs to one.
    pub daemon_name: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksResponse {
    pub task_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// ListTasks' matching tasks, oldest first: every one (the request's `maxResults` and
/// `nextToken` are [`list_tasks`]'s).
pub fn list_task_rows(ecs: &Ecs, req: &ListTasksRequest) -> EcsResult<Vec<TaskRow>> {
    let desired = match req.desired_status.as_deref() {
        None => DesiredStatus::Running,
        Some(s) => s.parse::<DesiredStatus>().map_err(|_| {
            EcsError::invalid(format!(
                "desiredStatus {s:?}: must be RUNNING, PENDING or STOPPED"
            ))
        })?,
    };
    // Ref: ecs.json `LaunchType`.
    const LAUNCH_TYPES: [&str; 4] = ["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"];
    if let Some(l) = req.launch_type.as_deref()
        && !LAUNCH_TYPES.contains(&l)
    {
        return Err(EcsError::invalid(format!(
            "launchType {l:?}: must be EC2, FARGATE, EXTERNAL or MANAGED_INSTANCES"
        )));
    }
    let cluster = cluster_name(super::cluster_or_default(req.cluster.as_deref()));
    let mut store = ecs.open_store()?;
    check_cluster(&store, cluster)?;
    let mut launch_type = req.launch_type.clone();
    if let Some(ci) = req.container_instance.as_deref() {
        let ctx = AwsContext::from_env();
        let ours = shape::container_instance_arn(&ctx.ecs_arn(&format!("cluster/{cluster}")));
        if ci != ours && ci != task_id(&ours) {
            return Err(EcsError::invalid(format!(
                "containerInstance {ci:?}: not a container instance of cluster {cluster} (this \
                 host is its one container instance: {ours})"
            )));
        }
        // Tasks on the container instance: the EC2 ones (FARGATE tasks have none).
        match launch_type.as_deref() {
            None | Some("EC2") => launch_type = Some("EC2".into()),
            Some(_) => return Ok(Vec::new()),
        }
    }
    // Ref: ListTasks answers ServiceNotFoundException for a service the cluster lacks.
    if let Some(svc) = req.service_name.as_deref()
        && store
            .service(cluster, names::service_name(svc))
            .map_err(anyhow::Error::from)?
            .is_none()
    {
        return Err(EcsError::ServiceNotFound(format!(
            "Service not found. ({svc} in cluster {cluster})"
        )));
    }
    if let Some(d) = req.daemon_name.as_deref() {
        return Err(EcsError::invalid(format!(
            "daemonName {d:?}: cluster {cluster} has no daemon of that name (this host runs no \
             daemons)"
        )));
    }
    ecs.reconcile(&mut store);
    Ok(store
        .list_tasks(&TaskFilter {
            cluster: Some(cluster.to_string()),
            family: req.family.clone(),
            desired_status: Some(desired),
            started_by: req.started_by.clone(),
            group: req
                .service_name
                .as_deref()
                .map(|s| format!("service:{}", names::service_name(s))),
            launch_type,
        })
        .map_err(anyhow::Error::from)?)
}

/// ListTasks, one page of it.
pub fn list_tasks(ecs: &Ecs, req: &ListTasksRequest) -> EcsResult<ListTasksResponse> {
    let rows = list_task_rows(ecs, req)?;
    let arns = rows.into_iter().map(|t| t.arn).collect();
    let (task_arns, next_token) = page(arns, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListTasksResponse {
        task_arns,
        next_token,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopTaskRequest {
    pub cluster: Option<String>,
    pub task: String,
    /// The task's stoppedReason (default "Task stopped by user").
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StopTaskResponse {
    pub task: Task,
}

/// StopTask: asks the task's supervisor to stop it (containers get SIGTERM in reverse
/// dependency order, SIGKILL after their stopTimeout) and answers once its desiredStatus
/// is STOPPED.
pub fn stop_task(ecs: &Ecs, req: &StopTaskRequest, unset: Unset) -> EcsResult<StopTaskResponse> {
    let cluster = scope(req.cluster.as_deref(), unset);
    let mut store = ecs.open_store()?;
    if let Some(c) = cluster {
        check_cluster(&store, c)?;
    }
    ecs.reconcile_tasks(&mut store, &[task_id(&req.task)]);
    let task = &req.task;
    let id = task_id(task).to_string();
    let found = store
        .task(&id)
        .map_err(anyhow::Error::from)?
        .filter(|(row, _)| cluster.is_none_or(|c| cluster_name(c) == row.cluster));
    let Some((t, _)) = found else {
        return Err(EcsError::invalid(format!(
            "The referenced task was not found: {task}"
        )));
    };
    if t.last_status != LastStatus::Stopped {
        ask_to_stop(ecs, &mut store, &id, req.reason.as_deref())?;
    }
    let task = task_by_id(&store, &id)?.context("task vanished from the store")?;
    Ok(StopTaskResponse { task })
}

fn ask_to_stop(ecs: &Ecs, store: &mut Store, id: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let client = Client::new(&TaskPaths::new(&ecs.root, &ecs.run_root, id), id);
    let r = client.stop(
        StopCode::UserInitiated,
        reason.unwrap_or(stop::USER_REASON),
        false,
    );
    match r {
        Ok(()) => {}
        Err(e @ ClientError::Refused { .. }) => return Err(e.into()),
        // It may have just finished; otherwise reconcile notices it is gone.
        Err(e) => {
            tracing::warn!(error = %e, "could not reach the supervisor");
            ecs.reconcile_tasks(store, &[id]);
        }
    }
    // StopTask answers once desiredStatus is STOPPED.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if store
            .task(id)?
            .is_some_and(|(t, _)| t.desired_status == DesiredStatus::Stopped)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecs(dir: &std::path::Path) -> Ecs {
        Ecs {
            log_level: "warn".into(),
            ..Ecs::scratch(dir)
        }
    }

    #[test]
    fn a_request_without_a_cluster_means_default_unless_the_caller_says_any() {
        assert_eq!(scope(None, Unset::DefaultCluster), Some("default"));
        assert_eq!(scope(Some(""), Unset::DefaultCluster), Some("default"));
        assert_eq!(scope(None, Unset::AnyCluster), None);
        assert_eq!(scope(Some("dev"), Unset::AnyCluster), Some("dev"));
    }

    #[test]
    fn every_run_task_member_is_classified() {
        taskdef::coverage::check_table(
            taskdef::coverage::RUN_TASK,
            taskdef::members::paths::<RunTaskRequest>(),
        );
    }

    #[test]
    fn request_members_not_applied_become_warnings() {
        let req: RunTaskRequest = serde_json::from_str(
            r#"{"taskDefinition":"web","count":1,"propagateTags":"TASK_DEFINITION",
                "capacityProviderStrategy":[{"capacityProvider":"FARGATE_SPOT"}],
                "enableECSManagedTags":true,"clientToken":"t-1","referenceId":"r",
                "placementConstraints":[{"type":"distinctInstance"}],
                "overrides":{"executionRoleArn":"arn:aws:iam::1:role/x",
                  "ephemeralStorage":{"sizeInGiB":30},
                  "containerOverrides":[{"name":"a","command":["x"],
                    "environmentFiles":[{"value":"arn:aws:s3:::b/a.env","type":"s3"}]}]}}"#,
        )
        .unwrap();
        let w = request_warnings(&req);
        let paths: Vec<&str> = w.iter().map(|w| w.split(':').next().unwrap()).collect();
        // placementConstraints are applied (placement on this box's container instance).
        assert_eq!(paths, ["overrides.executionRoleArn"], "{w:#?}");
        // What the CLI and the scheduler send by default warns about nothing.
        assert!(
            request_warnings(&RunTaskRequest {
                task_definition: "web".into(),
                count: Some(1),
                ..Default::default()
            })
            .is_empty()
        );
    }

    fn item(p: &str, weight: i64, base: i64) -> CapacityProviderStrategyItem {
        CapacityProviderStrategyItem {
            capacity_provider: p.into(),
            weight,
            base,
        }
    }

    #[test]
    fn a_strategy_places_its_base_first_then_by_weight() {
        let s = [item("FARGATE", 1, 2), item("FARGATE_SPOT", 3, 0)];
        let got = distribute(&s, 6);
        // The base's 2, then 4 by weight 1:3.
        assert_eq!(got[..2], ["FARGATE", "FARGATE"]);
        let spot = got[2..].iter().filter(|p| *p == "FARGATE_SPOT").count();
        assert_eq!((got.len(), spot), (6, 3), "{got:?}");
        assert_eq!(distribute(&[item("FARGATE_SPOT", 1, 0)], 2).len(), 2);
        assert!(distribute(&[], 3).is_empty());
        let assoc = vec!["FARGATE".to_string()];
        let e = clusters::check_strategy("s", &s, Some(&assoc), "dev").unwrap_err();
        assert!(
            e.message().contains("not associated with the cluster"),
            "{e}"
        );
        let e = clusters::check_strategy("s", &[item("FARGATE", 0, 0)], None, "dev").unwrap_err();
        assert!(e.message().contains("weight greater than zero"), "{e}");
        let e = clusters::check_strategy("s", &[item("MINE", 1, 0)], None, "dev").unwrap_err();
        assert!(e.message().contains("does not exist"), "{e}");
        let two_bases = [item("FARGATE", 1, 1), item("FARGATE_SPOT", 1, 1)];
        assert!(clusters::check_strategy("s", &two_bases, None, "dev").is_err());
    }

    #[test]
    fn client_tokens_and_placement_are_checked() {
        assert!(check_client_token(Some("abc-123_!~")).is_ok());
        assert!(check_client_token(Some("has space")).is_err());
        assert!(check_client_token(Some(&"x".repeat(65))).is_err());
        assert!(check_client_token(Some("")).is_err());
        let c = |kind: &str, e: Option<&str>| PlacementConstraint {
            kind: Some(kind.into()),
            expression: e.map(str::to_string),
        };
        assert!(check_placement(Some(&[c("distinctInstance", None)]), None).is_ok());
        assert!(check_placement(Some(&[c("memberOf", None)]), None).is_err());
        assert!(check_placement(Some(&[c("memberOf", Some("attribute:x == y"))]), None).is_ok());
        assert!(check_placement(Some(&[c("nearby", None)]), None).is_err());
        let st = PlacementStrategy {
            kind: Some("binpack".into()),
            field: Some("memory".into()),
        };
        assert!(check_placement(None, Some(&[st])).is_ok());
    }

    #[test]
    fn requests_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = ecs(dir.path());
        let run = |req: RunTaskRequest| run_task(&ecs, req, Local::default()).err().unwrap();
        let e = run(RunTaskRequest {
            task_definition: "file:///etc/passwd".into(),
            ..Default::default()
        });
        assert_eq!(e.name(), "ClientException", "{e}");
        let e = run(RunTaskRequest {
            task_definition: "web".into(),
            count: Some(11),
            ..Default::default()
        });
        assert_eq!(e.name(), "InvalidParameterException", "{e}");
        let e = run(RunTaskRequest {
            task_definition: "web".into(),
            launch_type: Some("MOON".into()),
            ..Default::default()
        });
        assert_eq!(e.name(), "InvalidParameterException", "{e}");
        let e = run(RunTaskRequest {
            task_definition: "web".into(),
            cluster: Some("nope".into()),
            ..Default::default()
        });
        assert_eq!(e.name(), "ClusterNotFoundException", "{e}");
        let e = run(RunTaskRequest {
            task_definition: "web".into(),
            ..Default::default()
        });
        assert_eq!(e.name(), "ClientException", "{e}");
        assert!(
            e.message()
                .contains("Unable to describe task definition web"),
            "{e}"
        );
        let store = ecs.open_store().unwrap();
        assert!(
            store.list_clusters().unwrap().is_empty(),
            "nothing was written"
        );
    }

    #[test]
    fn list_tasks_checks_its_members() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = ecs(dir.path());
        let e = list_tasks(
            &ecs,
            &ListTasksRequest {
                desired_status: Some("LOST".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.name(), "InvalidParameterException");
        let e = list_tasks(
            &ecs,
            &ListTasksRequest {
                cluster: Some("dev".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.name(), "ClusterNotFoundException");
        let r = list_tasks(&ecs, &ListTasksRequest::default()).unwrap();
        assert!(r.task_arns.is_empty() && r.next_token.is_none());
        let e = stop_task(
            &ecs,
            &StopTaskRequest {
                task: "0123".into(),
                ..Default::default()
            },
            Unset::DefaultCluster,
        )
        .unwrap_err();
        assert_eq!(e.name(), "InvalidParameterException");
    }
}
