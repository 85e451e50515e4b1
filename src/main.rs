//! minifargate: run an Amazon ECS task definition on a plain Linux box the way Fargate
//! would. `main` parses arguments, sets up logging and maps errors to exit codes.
#![forbid(unsafe_code)]

mod api;
mod cli;
mod store;
mod supervisor;
mod task;
mod taskdef;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A container's init (`initProcessEnabled`) when this binary is bind-mounted as /dev/init.
    if runtime::init::is_init_invocation() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(runtime::init::run(&args));
    }
    let cli = cli::help::parse();
    cli::init_tracing(&cli.global);
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("minifargate: {}", cli::render_error(&err));
            ExitCode::FAILURE
        }
    }
}
