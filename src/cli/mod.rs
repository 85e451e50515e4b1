//! Command-line interface: one file per verb group; this module holds the global
//! options, the verb enum and the dispatch to each verb's `run`.

pub mod agent;
pub mod aws;
mod cluster;
mod exec;
pub mod help;
mod images;
pub(crate) mod inspect;
mod logs;
pub mod model;
mod output;
mod plain_log;
mod remote_logs;
mod render;
mod run_input;
mod run_task;
pub mod serve;
mod services;
mod shorthand;
mod system;
mod taskdefs;
pub(crate) mod tasks;

use crate::ecs::operations as ops;
use aws::Generic;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::store::DEFAULT_ROOT;

/// Run Amazon ECS task definitions on a plain Linux box, the way Fargate would.
#[derive(Debug, Parser)]
#[command(name = "minifargate", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// Directory holding all state (images, layers, tasks, state.db).
    #[arg(
        long,
        global = true,
        env = "MINIFARGATE_ROOT",
        default_value = DEFAULT_ROOT
    )]
    pub root: PathBuf,
    /// Directory for runtime files (sockets, locks, netns mounts).
    #[arg(
        long,
        global = true,
        env = "MINIFARGATE_RUN_ROOT",
        default_value = "/run/minifargate"
    )]
    pub run_root: PathBuf,
    /// Registry configuration file (mirrors, insecure registries).
    #[arg(long, global = true, env = "MINIFARGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Per-task user namespaces: container root as an unprivileged host id
    /// (docs/security.md). `auto`: when an id range is configured (/etc/subuid and
    /// /etc/subgid for `minifargate`, or MINIFARGATE_USERNS_RANGE=START:COUNT).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MINIFARGATE_USERNS",
        default_value_t = crate::supervisor::isolation::userns::Mode::Auto
    )]
    pub userns: crate::supervisor::isolation::userns::Mode,
}

impl GlobalOpts {
    /// The ECS core over these options' state.
    pub fn ecs(&self) -> crate::ecs::Ecs {
        crate::ecs::Ecs {
            root: self.root.clone(),
            run_root: self.run_root.clone(),
            config: self.config.clone(),
            log_level: self.log_level.clone(),
            userns: self.userns,
            supervisors: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// `execute-command` is the AWS CLI's name for the verb.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image from ECR or any OCI registry into the local cache.
    Pull(images::PullArgs),
    /// List images in the local cache.
    Images(images::ImagesArgs),
    /// Remove an image from the local cache.
    Rmi(images::RmiArgs),
    /// Load images from a `docker save` tarball, an OCI archive or an OCI layout directory.
    Load(images::LoadArgs),
    /// Push an image archive or an image of the cache into a repository of this box's ECR.
    Push(images::PushArgs),
    /// Remove blobs and layers no image references.
    Prune(images::PruneArgs),
    /// Mount or unmount an image's overlay rootfs.
    Rootfs(images::RootfsArgs),
    /// Check a task definition against the ECS and Fargate rules.
    Validate(taskdefs::ValidateArgs),
    /// Register a task definition as the next revision of its family.
    RegisterTaskDefinition(taskdefs::RegisterArgs),
    /// Show a registered task definition (aws ecs describe-task-definition).
    DescribeTaskDefinition(Generic<ops::DescribeTaskDefinition>),
    /// List registered task definition ARNs (aws ecs list-task-definitions).
    ListTaskDefinitions(Generic<ops::ListTaskDefinitions>),
    /// List task definition families (aws ecs list-task-definition-families).
    ListTaskDefinitionFamilies(Generic<ops::ListTaskDefinitionFamilies>),
    /// Mark a task definition revision INACTIVE (aws ecs deregister-task-definition).
    DeregisterTaskDefinition(Generic<ops::DeregisterTaskDefinition>),
    /// Run a task from a task definition (aws ecs run-task).
    RunTask(Box<run_task::RunTaskArgs>),
    /// Run one container as a task, like `docker run`.
    Run(run_task::RunArgs),
    /// Describe tasks (aws ecs describe-tasks); without --cluster, in any cluster.
    DescribeTasks(Generic<ops::DescribeTasks>),
    /// List task ARNs (aws ecs list-tasks).
    ListTasks(Generic<ops::ListTasks>),
    /// Stop a task (aws ecs stop-task); without --cluster, in any cluster.
    StopTask(Generic<ops::StopTask>),
    /// Show a task's container output.
    Logs(tasks::LogsArgs),
    /// Create a log group in the local CloudWatch Logs store (aws logs create-log-group).
    CreateLogGroup(logs::CreateLogGroupArgs),
    /// List the local CloudWatch Logs store's log groups (aws logs describe-log-groups).
    DescribeLogGroups(logs::DescribeLogGroupsArgs),
    /// Delete a log group with its streams and events (aws logs delete-log-group).
    DeleteLogGroup(logs::DeleteLogGroupArgs),
    /// Set how many days a log group keeps its events (aws logs put-retention-policy).
    PutRetentionPolicy(logs::PutRetentionPolicyArgs),
    /// Print a log group's events, and with --follow new ones as they come (aws logs tail).
    Tail(logs::TailArgs),
    /// Show how long each launch phase of a task took (as run-task --timeline does).
    Timeline(tasks::TimelineArgs),
    /// Create a cluster (aws ecs create-cluster).
    CreateCluster(Generic<ops::CreateCluster>),
    /// List cluster ARNs (aws ecs list-clusters).
    ListClusters(Generic<ops::ListClusters>),
    /// Describe clusters (aws ecs describe-clusters).
    DescribeClusters(Generic<ops::DescribeClusters>),
    /// Delete a cluster without active tasks (aws ecs delete-cluster).
    DeleteCluster(Generic<ops::DeleteCluster>),
    /// Create a service: keep desiredCount tasks of a task definition running (aws ecs
    /// create-service; `serve` runs the scheduler).
    CreateService(Generic<ops::CreateService>),
    /// Change a service's count, task definition or deployment settings (aws ecs
    /// update-service).
    UpdateService(Generic<ops::UpdateService>),
    /// Describe services (aws ecs describe-services).
    DescribeServices(Generic<ops::DescribeServices>),
    /// List service ARNs (aws ecs list-services).
    ListServices(Generic<ops::ListServices>),
    /// Delete a service (aws ecs delete-service).
    DeleteService(Generic<ops::DeleteService>),
    /// Add tags to a cluster, task definition, task or service (aws ecs tag-resource).
    TagResource(Generic<ops::TagResource>),
    /// Remove tags from a resource (aws ecs untag-resource).
    UntagResource(Generic<ops::UntagResource>),
    /// List a resource's tags (aws ecs list-tags-for-resource).
    ListTagsForResource(Generic<ops::ListTagsForResource>),
    /// Protect tasks from a service's scale-in and deployments for a while (aws ecs
    /// update-task-protection).
    UpdateTaskProtection(Generic<ops::UpdateTaskProtection>),
    /// Show tasks' scale-in protection (aws ecs get-task-protection).
    GetTaskProtection(Generic<ops::GetTaskProtection>),
    /// List account settings (aws ecs list-account-settings).
    ListAccountSettings(Generic<ops::ListAccountSettings>),
    /// Set an account setting (aws ecs put-account-setting).
    PutAccountSetting(Generic<ops::PutAccountSetting>),
    /// Set an account setting's default (aws ecs put-account-setting-default).
    PutAccountSettingDefault(Generic<ops::PutAccountSettingDefault>),
    /// Start a task on this box as the cluster's container instance, with EC2's semantics
    /// (aws ecs start-task).
    StartTask(Generic<ops::StartTask>),
    /// Delete INACTIVE task definition revisions (aws ecs delete-task-definitions).
    DeleteTaskDefinitions(Generic<ops::DeleteTaskDefinitions>),
    /// List the cluster's container instances: this box (aws ecs list-container-instances).
    ListContainerInstances(Generic<ops::ListContainerInstances>),
    /// Describe container instances: this box's CPU, memory and ports, registered and
    /// remaining (aws ecs describe-container-instances).
    DescribeContainerInstances(Generic<ops::DescribeContainerInstances>),
    /// Change a cluster's settings and configuration (aws ecs update-cluster).
    UpdateCluster(Generic<ops::UpdateCluster>),
    /// Change a cluster's settings, e.g. containerInsights (aws ecs update-cluster-settings).
    UpdateClusterSettings(Generic<ops::UpdateClusterSettings>),
    /// Set a cluster's capacity providers and default strategy (aws ecs
    /// put-cluster-capacity-providers).
    PutClusterCapacityProviders(Generic<ops::PutClusterCapacityProviders>),
    /// Describe capacity providers: FARGATE and FARGATE_SPOT (aws ecs
    /// describe-capacity-providers).
    DescribeCapacityProviders(Generic<ops::DescribeCapacityProviders>),
    /// List the services of a Service Connect namespace (aws ecs
    /// list-services-by-namespace).
    ListServicesByNamespace(Generic<ops::ListServicesByNamespace>),
    /// List a service's deployments, newest first (aws ecs list-service-deployments).
    ListServiceDeployments(Generic<ops::ListServiceDeployments>),
    /// Describe service deployments: revisions, circuit breaker, rollback (aws ecs
    /// describe-service-deployments).
    DescribeServiceDeployments(Generic<ops::DescribeServiceDeployments>),
    /// Stop a service deployment in progress by rolling it back (aws ecs
    /// stop-service-deployment).
    StopServiceDeployment(Generic<ops::StopServiceDeployment>),
    /// Describe service revisions: a deployment's task definition and settings (aws ecs
    /// describe-service-revisions).
    DescribeServiceRevisions(Generic<ops::DescribeServiceRevisions>),
    /// Elastic Load Balancing v2, as `aws elbv2 VERB …`: every operation serve answers
    /// (`minifargate elbv2 --help` lists them), over this box's load balancers.
    #[command(disable_help_flag = true)]
    Elbv2(services::VerbArgs),
    /// AWS Cloud Map, as `aws servicediscovery VERB …`: every operation serve answers
    /// (`minifargate servicediscovery --help` lists them).
    #[command(disable_help_flag = true)]
    Servicediscovery(services::VerbArgs),
    /// Serve the ECS API (AWS JSON 1.1) for the AWS CLI and SDKs.
    Serve(serve::ServeArgs),
    /// Register this box as a container instance of a cluster kept in etcd and keep it
    /// connected (running tasks placed on it is a later step).
    Agent(agent::AgentArgs),
    /// Make a cluster's certificates (`cluster init`) and a box's (`cluster add-box`).
    Cluster(cluster::ClusterArgs),
    /// Run a command in a running container of a task, as `aws ecs execute-command`
    /// (`exec` is the short form, with docker exec's options).
    ExecuteCommand(exec::ExecuteCommandArgs),
    /// Run a command in a running container of a task (aws ecs execute-command, docker exec).
    Exec(exec::ExecArgs),
    /// Show how a running task is isolated: namespaces, cgroups, rootfs, network.
    Inspect(inspect::InspectArgs),
    /// Versions, cgroup layout, kernel features and state dirs (for bug reports).
    System(system::SystemArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(system::CompletionsArgs),
    /// Print or write the man pages.
    Man(system::ManArgs),
    /// The per-task supervisor (started by run-task; not for direct use).
    #[command(hide = true)]
    Supervise(crate::supervisor::SuperviseArgs),
    /// Deletes what `prune` moved to the image cache's trash (started by prune; not for
    /// direct use).
    #[command(hide = true)]
    EmptyTrash,
    /// A cluster box's data plane: its tasks' DNS server and Service Connect listeners
    /// (started by `agent`, outliving its restarts; not for direct use).
    #[command(hide = true)]
    DataPlane,
}

/// Sets up the log subscriber: fmt's, or for a task's supervisor, which lives as long as
/// its task, [`plain_log::PlainLog`] (the same lines without fmt's span registry).
pub fn init_tracing(global: &GlobalOpts, supervisor: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // At the default level, not libcgroups' warning about every v1 controller the
        // host lacks, on each exec (--log-level info or lower shows them).
        let quiet = if global.log_level.split(',').next() == Some("warn") {
            ",libcgroups=error"
        } else {
            ""
        };
        EnvFilter::new(format!("{},aws=warn,hyper=warn{quiet}", global.log_level))
    });
    // Colours only for a person at a terminal: not in a task's supervisor.log, serve's
    // journal or a CI log (and never with NO_COLOR set).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if supervisor {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        // try_init, as fmt's init: also the bridge for crates that log through `log`.
        let _ = plain_log::PlainLog::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>)
            .with(filter)
            .try_init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // The task supervisor lives as long as its task, under every frame of its call chain:
    // not under `verb`'s, which holds the locals of every verb inlined into it (62 KiB
    // of stack, all of it touched by the stack probes on entry).
    match cli.command {
        Command::Supervise(a) => supervise(cli.global, a),
        command => verb(&cli.global, command),
    }
}

#[inline(never)]
fn supervise(g: GlobalOpts, a: crate::supervisor::SuperviseArgs) -> anyhow::Result<ExitCode> {
    crate::supervisor::run(&g.root, &g.run_root, g.config, g.userns, a)?;
    Ok(ExitCode::SUCCESS)
}

#[inline(never)]
fn verb(g: &GlobalOpts, command: Command) -> anyhow::Result<ExitCode> {
    // `minifargate list-tasks | head -1`: a reader that goes away ends a printing verb
    // quietly, as it ends `ls` (not with a "failed printing to stdout" panic). Not for
    // the verbs that own a task or serve clients: they clean up, or must outlive a
    // client that disconnects.
    if !matches!(
        command,
        Command::Serve(_)
            | Command::Agent(_)
            | Command::DataPlane
            | Command::RunTask(_)
            | Command::Run(_)
            | Command::Exec(_)
            | Command::ExecuteCommand(_)
    ) {
        runtime::restore_default_sigpipe();
    }
    match command {
        Command::Pull(a) => images::pull(g, a),
        Command::Images(a) => images::images(g, a),
        Command::Rmi(a) => images::rmi(g, a),
        Command::Load(a) => images::load(g, a),
        Command::Push(a) => images::push(g, a),
        Command::Prune(a) => images::prune(g, a),
        Command::Rootfs(a) => images::rootfs(g, a),
        Command::Validate(a) => taskdefs::validate(g, a),
        Command::RegisterTaskDefinition(a) => taskdefs::register(g, a),
        Command::DescribeTaskDefinition(a) => a.run(g),
        Command::ListTaskDefinitions(a) => a.run(g),
        Command::ListTaskDefinitionFamilies(a) => a.run(g),
        Command::DeregisterTaskDefinition(a) => a.run(g),
        Command::RunTask(a) => run_task::run_task(g, *a),
        Command::Run(a) => run_task::run(g, a),
        Command::DescribeTasks(a) => tasks::describe(g, a),
        Command::ListTasks(a) => a.run(g),
        Command::StopTask(a) => tasks::stop_task(g, a),
        Command::Logs(a) => match a.etcd.clone() {
            Some(endpoints) => remote_logs::logs(&a, &endpoints),
            None => tasks::logs(g, a),
        },
        Command::CreateLogGroup(a) => logs::create_log_group(g, a),
        Command::DescribeLogGroups(a) => logs::describe_log_groups(g, a),
        Command::DeleteLogGroup(a) => logs::delete_log_group(g, a),
        Command::PutRetentionPolicy(a) => logs::put_retention_policy(g, a),
        Command::Tail(a) => logs::tail(g, a),
        Command::Timeline(a) => tasks::timeline(g, a),
        Command::CreateCluster(a) => a.run(g),
        Command::ListClusters(a) => a.run(g),
        Command::DescribeClusters(a) => a.run(g),
        Command::DeleteCluster(a) => a.run(g),
        Command::CreateService(a) => a.run(g),
        Command::UpdateService(a) => a.run(g),
        Command::DescribeServices(a) => a.run(g),
        Command::ListServices(a) => a.run(g),
        Command::DeleteService(a) => a.run(g),
        Command::TagResource(a) => a.run(g),
        Command::UntagResource(a) => a.run(g),
        Command::ListTagsForResource(a) => a.run(g),
        Command::UpdateTaskProtection(a) => a.run(g),
        Command::GetTaskProtection(a) => a.run(g),
        Command::ListAccountSettings(a) => a.run(g),
        Command::PutAccountSetting(a) => a.run(g),
        Command::PutAccountSettingDefault(a) => a.run(g),
        Command::StartTask(a) => a.run(g),
        Command::DeleteTaskDefinitions(a) => a.run(g),
        Command::ListContainerInstances(a) => a.run(g),
        Command::DescribeContainerInstances(a) => a.run(g),
        Command::UpdateCluster(a) => a.run(g),
        Command::UpdateClusterSettings(a) => a.run(g),
        Command::PutClusterCapacityProviders(a) => a.run(g),
        Command::DescribeCapacityProviders(a) => a.run(g),
        Command::ListServicesByNamespace(a) => a.run(g),
        Command::ListServiceDeployments(a) => a.run(g),
        Command::DescribeServiceDeployments(a) => a.run(g),
        Command::StopServiceDeployment(a) => a.run(g),
        Command::DescribeServiceRevisions(a) => a.run(g),
        Command::Elbv2(a) => services::run(g, &model::ELBV2, &a),
        Command::Servicediscovery(a) => services::run(g, &model::SERVICEDISCOVERY, &a),
        Command::Serve(_) => unreachable!("`main` starts serve (the API front-end)"),
        Command::Agent(a) => agent::agent(g, a),
        Command::Cluster(a) => cluster::cluster(a),
        Command::ExecuteCommand(a) => exec::execute_command(g, a),
        Command::Exec(a) => exec::exec(g, a),
        Command::Inspect(a) => inspect::inspect(g, a),
        Command::System(a) => system::system(g, a),
        Command::Completions(a) => system::completions(a),
        Command::Man(a) => system::man(a),
        Command::EmptyTrash => images::empty_trash(g),
        Command::DataPlane => {
            crate::cluster::data_plane::run(&g.run_root)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Supervise(_) => unreachable!("`dispatch` runs the supervisor"),
    }
}

/// A flag's ValueEnum value as ECS spells it in a request member (`FARGATE`, `DESC`).
fn member<T: ValueEnum>(v: T) -> Option<String> {
    v.to_possible_value().map(|v| v.get_name().to_string())
}
