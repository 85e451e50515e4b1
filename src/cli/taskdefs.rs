//! Task definition verbs that read a file: `validate` and `register-task-definition` (the
//! ECS core, crate::ecs::task_definitions, registers; the other task definition verbs are
//! built from the API model, see `super::aws`).

use super::GlobalOpts;
use crate::ecs::EcsError;
use crate::ecs::task_definitions as core;
use crate::taskdef::{self, Finding, LaunchType, Source, validate};
use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// Check a task definition against every rule ECS (and Fargate) applies, reporting all
/// problems at once. Exit status 0 when valid (warnings go to stderr), 1 when invalid.
///
/// Accepts the register-task-definition input, describe-task-definition output (wrapped or
/// not) and a bare containerDefinitions array.
///
/// Example: minifargate validate taskdef.json --launch-type FARGATE
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Task definition file: PATH, file://PATH, or - for standard input.
    pub file: String,
    /// Also apply the rules of this launch type (FARGATE rules apply anyway when
    /// requiresCompatibilities names FARGATE), as run-task --launch-type does.
    #[arg(long, value_enum)]
    pub launch_type: Option<LaunchType>,
    /// Check a template before its values are filled in: placeholders such as `${TAG}` are
    /// warnings and their members go unchecked (without it they are errors, as for
    /// register-task-definition).
    #[arg(long)]
    pub template: bool,
    /// Ignore members the ECS model does not have, with a warning, instead of refusing
    /// them as the AWS CLI does (`Unknown parameter in …`).
    #[arg(long)]
    pub lenient: bool,
    #[command(flatten)]
    pub task: TaskLevelFlags,
    /// `json` prints the findings as one JSON document on stdout, for tools and CI.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Register a task definition as the next revision of its family.
///
/// Example: minifargate register-task-definition --cli-input-json file://taskdef.json
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The task definition JSON: file://PATH, PATH, or - for standard input.
    #[arg(long, value_name = "FILE")]
    pub cli_input_json: String,
    /// Ignore members the ECS model does not have, with a warning, instead of refusing
    /// them as the AWS CLI does (`Unknown parameter in …`).
    #[arg(long)]
    pub lenient: bool,
    #[command(flatten)]
    pub task: TaskLevelFlags,
}

/// register-task-definition's task-level flags, which win over the file as the AWS CLI's
/// flags win over --cli-input-json. `validate` takes them too, so that it checks what
/// register-task-definition would register (a bare containerDefinitions array gets its
/// task-level settings this way).
#[derive(Debug, Args)]
pub struct TaskLevelFlags {
    /// Family to register under, overriding the file's (a bare containerDefinitions array
    /// otherwise takes its file name).
    #[arg(long)]
    pub family: Option<String>,
    /// Task CPU ("256", "1 vCPU"), overriding the file's.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Task memory ("512", "2 GB"), overriding the file's.
    #[arg(long)]
    pub memory: Option<String>,
    /// Network mode (awsvpc, bridge, host, none), overriding the file's.
    #[arg(long)]
    pub network_mode: Option<String>,
    /// Launch types the definition requires (FARGATE, EC2, EXTERNAL), overriding the file's.
    #[arg(long, num_args = 1..)]
    pub requires_compatibilities: Vec<String>,
    /// Task execution role ARN, overriding the file's.
    #[arg(long)]
    pub execution_role_arn: Option<String>,
    /// Task role ARN, overriding the file's.
    #[arg(long)]
    pub task_role_arn: Option<String>,
}

impl TaskLevelFlags {
    /// Applies the flags over the parsed file, as the AWS CLI merges flags into
    /// --cli-input-json, and makes it the definition register-task-definition registers.
    fn apply(&self, parsed: &mut taskdef::Parsed, source: &Source) -> anyhow::Result<()> {
        use taskdef::model::SizeValue;
        fn wire<T: serde::de::DeserializeOwned>(flag: &str, v: &str) -> anyhow::Result<T> {
            serde_json::from_value(serde_json::Value::String(v.to_string()))
                .with_context(|| format!("invalid {flag} {v:?}"))
        }
        let def = &mut parsed.def;
        if let Some(v) = &self.cpu {
            def.cpu = Some(SizeValue(v.clone()));
        }
        if let Some(v) = &self.memory {
            def.memory = Some(SizeValue(v.clone()));
        }
        if let Some(v) = &self.network_mode {
            def.network_mode = Some(wire("--network-mode", v)?);
        }
        if !self.requires_compatibilities.is_empty() {
            let list = self
                .requires_compatibilities
                .iter()
                .map(|v| wire("--requires-compatibilities", v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            def.requires_compatibilities = Some(list);
        }
        if let Some(v) = &self.execution_role_arn {
            def.execution_role_arn = Some(v.clone());
        }
        if let Some(v) = &self.task_role_arn {
            def.task_role_arn = Some(v.clone());
        }
        parsed.as_registered(self.family.as_deref(), source.default_family());
        Ok(())
    }
}

/// JSON as the AWS CLI prints it: four-space indent.
fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value
        .serialize(&mut ser)
        .context("failed to encode the output as JSON")?;
    out.push(b'\n');
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .context("failed to write to standard output")?;
    Ok(())
}

/// `web.json:3:10: error: …` for syntax errors, `web.json: error: path: …` otherwise.
pub(super) fn print_findings<'a>(name: &str, findings: impl IntoIterator<Item = &'a Finding>) {
    for f in findings {
        match (f.line, f.column) {
            (Some(l), Some(c)) => {
                let mut bare = f.clone();
                (bare.line, bare.column) = (None, None);
                eprintln!("{name}:{l}:{c}: {bare}")
            }
            _ => eprintln!("{name}: {f}"),
        }
    }
}

pub fn validate(_g: &GlobalOpts, a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let source = Source::from_arg(&a.file);
    let name = source.display_name();
    let mut parsed = taskdef::load(&source)?;
    if a.lenient {
        parsed.lenient();
    }
    a.task.apply(&mut parsed, &source)?;
    let report = validate::validate(
        &parsed,
        &validate::Options {
            launch_type: a.launch_type,
            template: a.template,
        },
    );
    match a.output {
        Output::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                file: &'a str,
                #[serde(flatten)]
                report: &'a validate::Report,
            }
            print_json(&Doc {
                file: &name,
                report: &report,
            })?;
        }
        Output::Text => {
            print_findings(&name, &report.findings);
            let rules = if report.fargate {
                "ECS and Fargate rules"
            } else {
                "ECS rules"
            };
            if report.valid {
                println!("{name}: valid ({rules}, {} warning(s))", report.warnings);
            } else {
                println!(
                    "{name}: invalid ({rules}): {} error(s), {} warning(s)",
                    report.errors, report.warnings
                );
            }
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn register(g: &GlobalOpts, a: RegisterArgs) -> anyhow::Result<ExitCode> {
    let source = Source::from_arg(&a.cli_input_json);
    let name = source.display_name();
    let mut parsed = taskdef::load(&source)?;
    if a.lenient {
        parsed.lenient();
    }
    a.task.apply(&mut parsed, &source)?;
    let origin = core::Origin {
        name: &name,
        family: a.task.family.as_deref(),
        fallback_family: source.default_family(),
    };
    match core::register_task_definition(&g.ecs(), parsed, origin) {
        Ok(r) => {
            print_findings(&name, &r.warnings);
            print_json(&r.response)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(EcsError::InvalidTaskDefinition { message, findings }) => {
            print_findings(&name, &findings);
            Err(anyhow::anyhow!(
                "An error occurred when calling the RegisterTaskDefinition operation: {message}"
            ))
        }
        Err(e) => Err(e.into()),
    }
}
