//! Task definition verbs that read a file: `validate` and `register-task-definition` (the
//! ECS core, crate::ecs::task_definitions, registers; the other task definition verbs are
//! built from the API model, see `super::aws`).

use super::GlobalOpts;
use crate::ecs::EcsError;
use crate::ecs::table::Op;
use crate::ecs::task_definitions as core;
use crate::taskdef::{self, Finding, LaunchType, Source, validate};
use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::process::ExitCode;

/// RegisterTaskDefinition's structure members as options (JSON or shorthand, typed by
/// the API model), merged over the file as the AWS CLI merges options over
/// --cli-input-json.
#[derive(Debug, Args)]
pub struct DefinitionMembers {
    /// Container definitions: one JSON list, or one JSON object or shorthand per container.
    #[arg(long, num_args = 1..)]
    pub container_definitions: Vec<String>,
    /// Volumes: one JSON list, or one JSON object or shorthand (`name=data`) per volume.
    #[arg(long, num_args = 1..)]
    pub volumes: Vec<String>,
    /// Placement constraints (`type=memberOf,expression=…`).
    #[arg(long, num_args = 1..)]
    pub placement_constraints: Vec<String>,
    /// Tags: `key=K,value=V` per tag, or JSON.
    #[arg(long, num_args = 1..)]
    pub tags: Vec<String>,
    /// Process namespace: `task`, `host` (or absent: per container).
    #[arg(long)]
    pub pid_mode: Option<String>,
    /// IPC namespace: `task`, `host`, `none`.
    #[arg(long)]
    pub ipc_mode: Option<String>,
    /// App Mesh proxy configuration (JSON or shorthand).
    #[arg(long)]
    pub proxy_configuration: Option<String>,
    /// Elastic Inference accelerators (JSON or shorthand per accelerator).
    #[arg(long, num_args = 1..)]
    pub inference_accelerators: Vec<String>,
    /// Task ephemeral storage (`sizeInGiB=30`).
    #[arg(long)]
    pub ephemeral_storage: Option<String>,
    /// Runtime platform (`cpuArchitecture=ARM64,operatingSystemFamily=LINUX`).
    #[arg(long)]
    pub runtime_platform: Option<String>,
    /// Record enableFaultInjection true.
    #[arg(long, overrides_with = "no_enable_fault_injection")]
    pub enable_fault_injection: bool,
    /// Record enableFaultInjection false.
    #[arg(long)]
    pub no_enable_fault_injection: bool,
}

impl DefinitionMembers {
    /// The members given, as RegisterTaskDefinition request JSON.
    fn values(&self) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        use super::aws::structured;
        use serde_json::{Value, json};
        let shape = super::model::operation(Op::RegisterTaskDefinition.name()).input_shape();
        let mut m = serde_json::Map::new();
        let lists: [(&str, &Vec<String>); 5] = [
            ("containerDefinitions", &self.container_definitions),
            ("volumes", &self.volumes),
            ("placementConstraints", &self.placement_constraints),
            ("tags", &self.tags),
            ("inferenceAccelerators", &self.inference_accelerators),
        ];
        for (name, args) in lists {
            let option = format!("--{}", super::model::kebab(name));
            let v = match args.as_slice() {
                [] => continue,
                [one] if super::aws::param_value(one)?.trim_start().starts_with('[') => {
                    structured(one, &shape[name], &option)?
                }
                many => Value::Array(
                    many.iter()
                        .map(|a| structured(a, &shape[name][0], &option))
                        .collect::<anyhow::Result<_>>()?,
                ),
            };
            m.insert(name.to_string(), v);
        }
        for (name, arg) in [
            ("proxyConfiguration", &self.proxy_configuration),
            ("ephemeralStorage", &self.ephemeral_storage),
            ("runtimePlatform", &self.runtime_platform),
        ] {
            if let Some(a) = arg {
                let option = format!("--{}", super::model::kebab(name));
                m.insert(name.to_string(), structured(a, &shape[name], &option)?);
            }
        }
        for (name, arg) in [("pidMode", &self.pid_mode), ("ipcMode", &self.ipc_mode)] {
            if let Some(a) = arg {
                m.insert(name.to_string(), json!(a));
            }
        }
        if self.enable_fault_injection || self.no_enable_fault_injection {
            m.insert(
                "enableFaultInjection".into(),
                json!(self.enable_fault_injection),
            );
        }
        Ok(m)
    }

    /// `text` with the members given merged over it (into a describe output's
    /// `taskDefinition`); `text` itself when none is given, so that findings keep the
    /// file's lines and columns.
    fn merge(&self, text: String) -> anyhow::Result<String> {
        let members = self.values()?;
        if members.is_empty() {
            return Ok(text);
        }
        let mut v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| super::aws::UsageError(format!("--cli-input-json is not JSON: {e}")))?;
        let target = match v.get_mut("taskDefinition") {
            Some(inner) if inner.is_object() => inner,
            _ => &mut v,
        };
        let Some(obj) = target.as_object_mut() else {
            return Err(super::aws::UsageError(format!(
                "{}: these options need a task definition object to go into, not a bare \
                 containerDefinitions array",
                members
                    .keys()
                    .map(|k| format!("--{}", super::model::kebab(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        };
        obj.extend(members);
        Ok(v.to_string())
    }
}

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
    #[command(flatten)]
    pub members: DefinitionMembers,
    /// `json` prints the findings as one JSON document on stdout, for tools and CI.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Register a task definition as the next revision of its family.
///
/// Example: minifargate register-task-definition --cli-input-json file://taskdef.json
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The task definition JSON: inline, file://PATH (`~` is $HOME), PATH, or - for
    /// standard input. The options below win over its members.
    #[arg(long, value_name = "JSON|FILE")]
    pub cli_input_json: Option<String>,
    /// Print a JSON skeleton of the RegisterTaskDefinition request and exit (`input`).
    #[arg(
        long,
        value_name = "KIND",
        num_args = 0..=1,
        default_missing_value = "input",
        value_parser = ["input"]
    )]
    pub generate_cli_skeleton: Option<String>,
    #[command(flatten)]
    pub members: DefinitionMembers,
    #[command(flatten)]
    pub output: super::aws::OutputOpts,
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
    let mut parsed = taskdef::parse::parse_str(&a.members.merge(source.read_to_string()?)?);
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
    if a.generate_cli_skeleton.is_some() {
        println!(
            "{}",
            super::model::operation(Op::RegisterTaskDefinition.name()).skeleton
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Without --cli-input-json the options are the whole request, as in the AWS CLI.
    let source = match &a.cli_input_json {
        Some(arg) => Source::from_arg(arg),
        None => Source::Inline("{}".into()),
    };
    let name = match &a.cli_input_json {
        Some(_) => source.display_name(),
        None => "<options>".to_string(),
    };
    let mut parsed = taskdef::parse::parse_str(&a.members.merge(source.read_to_string()?)?);
    if a.lenient {
        parsed.lenient();
    }
    a.task.apply(&mut parsed, &source)?;
    let origin = core::Origin {
        name: &name,
        family: a.task.family.as_deref(),
        fallback_family: source.default_family(),
        remote: false,
    };
    match core::register_task_definition(&g.ecs(), parsed, origin) {
        Ok(r) => {
            print_findings(&name, &r.warnings);
            super::aws::print_response(Op::RegisterTaskDefinition.name(), &r.response, &a.output)?;
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
