//! minifargate: run an Amazon ECS task definition on a plain Linux box the way Fargate
//! would. `main` parses arguments, sets up logging and maps errors to exit codes.
#![forbid(unsafe_code)]

mod api;
mod autoscaling;
mod certs;
mod cli;
mod cloudwatch;
mod cluster;
mod config;
mod dns;
mod ecr;
mod ecs;
mod elb;
mod errors;
mod host;
mod logs;
mod scheduler;
mod servicediscovery;
mod store;
mod supervisor;
mod task;
mod taskdef;

use errors::error_chain;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A container's init (`initProcessEnabled`) when this binary is bind-mounted as /dev/init.
    if runtime::init::is_init_invocation() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(runtime::init::run(&args));
    }
    // pid 1 of a task's shared pid/ipc namespaces (`pidMode`/`ipcMode` `task`).
    if runtime::holder::is_holder_invocation() {
        std::process::exit(runtime::holder::run());
    }
    let mut cli = cli::help::parse();
    // `agent` reads /etc/ecs/ecs.config first: its log level and task cleanup wait are
    // settings of this process (flags and MINIFARGATE_* variables win over it).
    let fallback = match &mut cli.command {
        cli::Command::Agent(a) => match cli::agent::read_ecs_config(&mut cli.global, a) {
            Ok(f) => f,
            Err(err) => {
                eprintln!("minifargate: {}", error_chain(err.as_ref()));
                return ExitCode::FAILURE;
            }
        },
        _ => Vec::new(),
    };
    let fallback = |name: &str| {
        fallback
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    // Every MINIFARGATE_* variable, parsed once (src/config.rs): a bad value stops here.
    if let Err(err) = config::init(&fallback) {
        eprintln!("minifargate: {}", error_chain(&err));
        return ExitCode::FAILURE;
    }
    cli::init_tracing(
        &cli.global,
        matches!(cli.command, cli::Command::Supervise(_)),
    );
    // `serve` is the API front-end's, which the CLI does not import.
    let run = match cli.command {
        cli::Command::Serve(a) => api::start::serve(cli.global.ecs(), serve_options(a)),
        command => cli::dispatch(cli::Cli {
            global: cli.global,
            command,
        }),
    };
    match run {
        Ok(code) => code,
        Err(err) => {
            eprintln!("minifargate: {}", error_chain(err.as_ref()));
            // Exit statuses: docs/cli.md "Exit status" and `minifargate --help`.
            if err.downcast_ref::<cli::aws::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `serve`'s flags as the API front-end's options (neither front-end imports the other).
fn serve_options(a: cli::serve::ServeArgs) -> api::start::Options {
    api::start::Options {
        listen: a.listen,
        credentials_file: a.credentials_file,
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        insecure_no_auth: a.insecure_no_auth,
        allowed_host: a.allowed_host,
        no_aws_profile: a.no_aws_profile,
        read_only: a.read_only,
        cluster: a.cluster,
        leader_ttl: a.leader_ttl,
        lost_instance_after: a.lost_instance_after,
        boxes_listen: a.boxes_listen,
        boxes_names: a.boxes_name,
        boxes_task_range: a.boxes_task_range,
        cluster_dir: a.cluster_dir,
        etcd_tls: a.etcd.tls(),
        etcd_tls_given: a.etcd.given(),
    }
}
