//! Task definition verbs: `validate`, `register-task-definition`, `describe-task-definition`,
//! `list-task-definitions`, `list-task-definition-families`, `deregister-task-definition`.
//! The API verbs print what the AWS CLI prints for the same ECS call.

use super::GlobalOpts;
use crate::api::error::EcsError;
use crate::store::{FamilyStatus, SortOrder, Store, StoredTaskDefinition};
use crate::taskdef::model::TaskDefinitionStatus;
use crate::taskdef::{
    self, AwsContext, Finding, LaunchType, RegisterError, Source, TaskDefRef, validate,
};
use anyhow::{Context, bail};
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
    /// requiresCompatibilities names FARGATE).
    #[arg(long, value_enum)]
    pub launch_type: Option<LaunchType>,
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
    /// Family to register under, overriding the file's (a bare containerDefinitions array
    /// otherwise takes its file name).
    #[arg(long)]
    pub family: Option<String>,
    /// Task CPU ("256", "1 vCPU"), overriding the file's: as the AWS CLI, flags win over
    /// --cli-input-json. Handy for a bare containerDefinitions array.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Task memory ("512", "2 GB"), overriding the file's.
    #[arg(long)]
    pub memory: Option<String>,
    /// Network mode (awsvpc, bridge, host, none), overriding the file's.
    #[arg(long)]
    pub network_mode: Option<String>,
    /// Launch types to validate against (FARGATE, EC2, EXTERNAL), overriding the file's.
    #[arg(long, num_args = 1..)]
    pub requires_compatibilities: Vec<String>,
    /// Task execution role ARN, overriding the file's.
    #[arg(long)]
    pub execution_role_arn: Option<String>,
    /// Task role ARN, overriding the file's.
    #[arg(long)]
    pub task_role_arn: Option<String>,
}

impl RegisterArgs {
    /// Applies the flags over the parsed file, as the AWS CLI merges flags into
    /// --cli-input-json.
    fn apply(&self, def: &mut taskdef::TaskDefinition) -> anyhow::Result<()> {
        use taskdef::model::SizeValue;
        fn wire<T: serde::de::DeserializeOwned>(flag: &str, v: &str) -> anyhow::Result<T> {
            serde_json::from_value(serde_json::Value::String(v.to_string()))
                .with_context(|| format!("invalid {flag} {v:?}"))
        }
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
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Include {
    #[value(name = "TAGS")]
    Tags,
}

/// Show a registered task definition.
///
/// Example: minifargate describe-task-definition --task-definition web:3
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// FAMILY (latest ACTIVE revision), FAMILY:REVISION or a task definition ARN.
    #[arg(long)]
    pub task_definition: String,
    /// Include the task definition's tags in the output.
    #[arg(long, value_enum)]
    pub include: Vec<Include>,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ListStatus {
    #[default]
    #[value(name = "ACTIVE")]
    Active,
    #[value(name = "INACTIVE")]
    Inactive,
    #[value(name = "DELETE_IN_PROGRESS")]
    DeleteInProgress,
}

/// List task definition ARNs, by family then revision.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this family's revisions (ECS matches the full family name here).
    #[arg(long)]
    pub family_prefix: Option<String>,
    #[arg(long, value_enum, default_value_t = ListStatus::Active)]
    pub status: ListStatus,
    #[arg(long, value_enum, default_value_t = SortOrder::Asc)]
    pub sort: SortOrder,
    #[command(flatten)]
    pub output: super::output::OutputArg,
}

/// List task definition families.
#[derive(Debug, Args)]
pub struct ListFamiliesArgs {
    /// Only families whose name starts with this.
    #[arg(long)]
    pub family_prefix: Option<String>,
    /// ACTIVE: families with an ACTIVE revision; INACTIVE: families without one.
    #[arg(long, value_enum, default_value_t = FamilyStatus::All)]
    pub status: FamilyStatus,
}

/// Mark a task definition revision INACTIVE. Its revision number is never reused.
///
/// Example: minifargate deregister-task-definition --task-definition web:3
#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// FAMILY:REVISION or a task definition ARN.
    #[arg(long)]
    pub task_definition: String,
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
fn print_findings<'a>(name: &str, findings: impl IntoIterator<Item = &'a Finding>) {
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

fn open_store(g: &GlobalOpts) -> anyhow::Result<Store> {
    Store::open(&g.root).with_context(|| {
        format!(
            "cannot use the state store under {} (set --root or MINIFARGATE_ROOT to a writable \
             directory)",
            g.root.display()
        )
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskDefinitionOutput<'a> {
    task_definition: &'a taskdef::TaskDefinition,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a [taskdef::model::Tag]>,
}

fn output(stored: &StoredTaskDefinition, with_tags: bool) -> TaskDefinitionOutput<'_> {
    TaskDefinitionOutput {
        task_definition: &stored.definition,
        tags: with_tags.then_some(stored.tags.as_slice()),
    }
}

pub fn validate(_g: &GlobalOpts, a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let source = Source::from_arg(&a.file);
    let name = source.display_name();
    let parsed = taskdef::load(&source)?;
    let report = validate::validate(
        &parsed,
        &validate::Options {
            launch_type: a.launch_type,
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
    a.apply(&mut parsed.def)?;
    match register_parsed(
        g,
        parsed,
        &name,
        a.family.as_deref(),
        source.default_family(),
    ) {
        Ok((response, warnings)) => {
            print_findings(&name, &warnings);
            print_json(&response)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match e.downcast::<RegisterError>() {
            Ok(RegisterError::Invalid { name, report }) => {
                print_findings(&name, &report.findings);
                Err(anyhow::anyhow!(
                    "An error occurred when calling the RegisterTaskDefinition operation: {}",
                    invalid_message(&name, &report)
                ))
            }
            Ok(e) => Err(e.into()),
            Err(e) => Err(e),
        },
    }
}

/// `NAME has N error(s) (CODE: first message)`: why a registration was refused.
pub fn invalid_message(name: &str, report: &taskdef::Report) -> String {
    let first = report
        .errors()
        .next()
        .map(|f| format!(" ({}: {})", f.code, f.message));
    format!(
        "{name} has {} error(s){}",
        report.errors,
        first.unwrap_or_default()
    )
}

/// RegisterTaskDefinition (CLI and API): validates and registers `parsed`; the response
/// JSON and the validation warnings.
pub fn register_parsed(
    g: &GlobalOpts,
    parsed: taskdef::Parsed,
    name: &str,
    family: Option<&str>,
    fallback_family: Option<String>,
) -> anyhow::Result<(serde_json::Value, Vec<Finding>)> {
    let mut store = open_store(g)?;
    let ctx = AwsContext::from_env();
    let r = taskdef::register(
        &mut store,
        parsed,
        name,
        family,
        fallback_family,
        &ctx,
        chrono::Utc::now(),
    )?;
    let json = serde_json::to_value(output(&r.stored, !r.stored.tags.is_empty()))
        .expect("a task definition encodes as JSON");
    Ok((json, r.warnings))
}

fn not_found(reference: &str) -> anyhow::Error {
    EcsError::client(format!(
        "Unable to describe task definition {reference} (see `minifargate \
         list-task-definitions`)."
    ))
    .into()
}

/// DescribeTaskDefinition (CLI and API).
pub fn describe_json(
    g: &GlobalOpts,
    reference: &str,
    with_tags: bool,
) -> anyhow::Result<serde_json::Value> {
    let (family, revision) = match TaskDefRef::parse(reference)? {
        TaskDefRef::Latest(f) => (f, None),
        TaskDefRef::Revision(f, r) => (f, Some(r)),
        TaskDefRef::File(_) => bail!(EcsError::invalid(
            "describe-task-definition takes FAMILY, FAMILY:REVISION or an ARN, not a file"
        )),
    };
    let store = open_store(g)?;
    let stored = store
        .task_definition(&family, revision)?
        .ok_or_else(|| not_found(reference))?;
    Ok(serde_json::to_value(output(&stored, with_tags))?)
}

pub fn describe(g: &GlobalOpts, a: DescribeArgs) -> anyhow::Result<ExitCode> {
    print_json(&describe_json(
        g,
        &a.task_definition,
        !a.include.is_empty(),
    )?)?;
    Ok(ExitCode::SUCCESS)
}

/// ListTaskDefinitions (CLI and API): the ARNs, by family then revision.
pub fn list_arns(
    g: &GlobalOpts,
    family_prefix: Option<&str>,
    status: ListStatus,
    sort: SortOrder,
) -> anyhow::Result<Vec<String>> {
    let status = match status {
        ListStatus::Active => TaskDefinitionStatus::Active,
        ListStatus::Inactive => TaskDefinitionStatus::Inactive,
        ListStatus::DeleteInProgress => TaskDefinitionStatus::DeleteInProgress,
    };
    let store = open_store(g)?;
    Ok(store.list_task_definitions(family_prefix, status, sort)?)
}

pub fn list(g: &GlobalOpts, a: ListArgs) -> anyhow::Result<ExitCode> {
    let arns = list_arns(g, a.family_prefix.as_deref(), a.status, a.sort)?;
    if a.output.output == super::output::OutputFormat::Table {
        super::output::arns_table("TASK DEFINITION", &arns);
        return Ok(ExitCode::SUCCESS);
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out {
        task_definition_arns: Vec<String>,
    }
    print_json(&Out {
        task_definition_arns: arns,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// ListTaskDefinitionFamilies (CLI and API).
pub fn list_family_names(
    g: &GlobalOpts,
    family_prefix: Option<&str>,
    status: FamilyStatus,
) -> anyhow::Result<Vec<String>> {
    let store = open_store(g)?;
    Ok(store.list_task_definition_families(family_prefix, status)?)
}

pub fn list_families(g: &GlobalOpts, a: ListFamiliesArgs) -> anyhow::Result<ExitCode> {
    let families = list_family_names(g, a.family_prefix.as_deref(), a.status)?;
    #[derive(Serialize)]
    struct Out {
        families: Vec<String>,
    }
    print_json(&Out { families })?;
    Ok(ExitCode::SUCCESS)
}

/// DeregisterTaskDefinition (CLI and API).
pub fn deregister_json(g: &GlobalOpts, reference: &str) -> anyhow::Result<serde_json::Value> {
    let (family, revision) = match TaskDefRef::parse(reference)? {
        TaskDefRef::Revision(f, r) => (f, r),
        _ => bail!(EcsError::invalid(format!(
            "{reference:?} must name a revision: FAMILY:REVISION or a task definition ARN"
        ))),
    };
    let mut store = open_store(g)?;
    let stored = store
        .deregister_task_definition(&family, revision, chrono::Utc::now())?
        .ok_or_else(|| not_found(reference))?;
    Ok(serde_json::to_value(output(&stored, false))?)
}

pub fn deregister(g: &GlobalOpts, a: DeregisterArgs) -> anyhow::Result<ExitCode> {
    print_json(&deregister_json(g, &a.task_definition)?)?;
    Ok(ExitCode::SUCCESS)
}
