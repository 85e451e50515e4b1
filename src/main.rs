//! minifargate: run an Amazon ECS task definition on a plain Linux box the way Fargate
//! would. `main` parses arguments, sets up logging and maps errors to exit codes.
#![forbid(unsafe_code)]

mod cli;
mod store;
mod supervisor;
mod task;
mod taskdef;

use std::process::ExitCode;

fn main() -> ExitCode {
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
