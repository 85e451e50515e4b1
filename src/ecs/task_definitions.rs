//! Task definitions: RegisterTaskDefinition, DescribeTaskDefinition,
//! DeregisterTaskDefinition, ListTaskDefinitions, ListTaskDefinitionFamilies, and how
//! RunTask and CreateService resolve a task definition reference. Validation is
//! `crate::taskdef`'s; this file stores what it lets through.

pub use super::task_definition_errors::{RegisterError, ResolveError};
use super::{Ecs, EcsError, EcsResult, enum_member, page};
use crate::store::{FamilyStatus, SortOrder, Store, StoredTaskDefinition};
use crate::taskdef::{self, AwsContext, TaskDefRef};
use serde::{Deserialize, Serialize};

/// The DescribeTaskDefinition request (also what DeregisterTaskDefinition reads).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTaskDefinitionRequest {
    pub task_definition: String,
    /// `TAGS` includes the tags.
    #[serde(default)]
    pub include: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeregisterTaskDefinitionRequest {
    pub task_definition: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionsRequest {
    pub family_prefix: Option<String>,
    /// ACTIVE (default), INACTIVE or DELETE_IN_PROGRESS.
    pub status: Option<String>,
    /// ASC (default) or DESC.
    pub sort: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionFamiliesRequest {
    pub family_prefix: Option<String>,
    /// ACTIVE, INACTIVE or ALL (default).
    pub status: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// The response of RegisterTaskDefinition, DescribeTaskDefinition and
/// DeregisterTaskDefinition: the revision, and its tags where asked for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionResponse {
    pub task_definition: taskdef::TaskDefinition,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<taskdef::model::Tag>>,
}

impl TaskDefinitionResponse {
    fn of(stored: StoredTaskDefinition, with_tags: bool) -> TaskDefinitionResponse {
        TaskDefinitionResponse {
            tags: with_tags.then_some(stored.tags),
            task_definition: stored.definition,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionsResponse {
    pub task_definition_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionFamiliesResponse {
    pub families: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Where a RegisterTaskDefinition input came from, for its messages and its family.
#[derive(Debug, Default)]
pub struct Origin<'a> {
    /// How findings name the input (`web.json`, `the request`).
    pub name: &'a str,
    /// The family to register under, over the definition's own (the CLI's `--family`).
    pub family: Option<&'a str>,
    /// The family of a bare containerDefinitions array: its file name.
    pub fallback_family: Option<String>,
    /// The request came over the API: local `environmentFiles` paths are refused
    /// ([`super::no_local_environment_files`]).
    pub remote: bool,
}

/// A registration that went through: the response and the findings that did not stop it.
#[derive(Debug)]
pub struct Registration {
    pub response: TaskDefinitionResponse,
    pub warnings: Vec<taskdef::Finding>,
}

/// RegisterTaskDefinition: validates `parsed` as ECS does and stores it as the next
/// revision of its family. A definition that breaks a rule is refused with every finding
/// ([`EcsError::InvalidTaskDefinition`]).
pub fn register_task_definition(
    ecs: &Ecs,
    parsed: taskdef::Parsed,
    origin: Origin<'_>,
) -> EcsResult<Registration> {
    if origin.remote {
        super::no_local_environment_files(&parsed.def)?;
    }
    let mut store = ecs.open_store()?;
    let ctx = taskdef::AwsContext::from_env();
    let r = register(&mut store, parsed, origin, None, &ctx, chrono::Utc::now())
        .map_err(anyhow::Error::from)?;
    let with_tags = !r.stored.tags.is_empty();
    Ok(Registration {
        response: TaskDefinitionResponse::of(r.stored, with_tags),
        warnings: r.warnings,
    })
}

fn not_found(reference: &str) -> EcsError {
    EcsError::client(format!(
        "Unable to describe task definition {reference} (see `minifargate \
         list-task-definitions`)."
    ))
}

/// DescribeTaskDefinition.
pub fn describe_task_definition(
    ecs: &Ecs,
    req: &DescribeTaskDefinitionRequest,
) -> EcsResult<TaskDefinitionResponse> {
    super::no_files(&req.task_definition)?;
    let (family, revision) = match TaskDefRef::parse(&req.task_definition)
        .map_err(|e| EcsError::invalid(e.to_string()))?
    {
        TaskDefRef::Latest(f) => (f, None),
        TaskDefRef::Revision(f, r) => (f, Some(r)),
        TaskDefRef::File(_) => {
            return Err(EcsError::invalid(
                "describe-task-definition takes FAMILY, FAMILY:REVISION or an ARN, not a file",
            ));
        }
    };
    let store = ecs.open_store()?;
    let stored = store
        .task_definition(&family, revision)
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| not_found(&req.task_definition))?;
    let with_tags = req.include.iter().any(|s| s == "TAGS");
    Ok(TaskDefinitionResponse::of(stored, with_tags))
}

/// DeregisterTaskDefinition: the revision becomes INACTIVE; its number is never reused.
pub fn deregister_task_definition(
    ecs: &Ecs,
    req: &DeregisterTaskDefinitionRequest,
) -> EcsResult<TaskDefinitionResponse> {
    let reference = req.task_definition.as_str();
    super::no_files(reference)?;
    let (family, revision) =
        match TaskDefRef::parse(reference).map_err(|e| EcsError::invalid(e.to_string()))? {
            TaskDefRef::Revision(f, r) => (f, r),
            _ => {
                return Err(EcsError::invalid(format!(
                    "{reference:?} must name a revision: FAMILY:REVISION or a task definition ARN"
                )));
            }
        };
    let mut store = ecs.open_store()?;
    let stored = store
        .deregister_task_definition(&family, revision, chrono::Utc::now())
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| not_found(reference))?;
    Ok(TaskDefinitionResponse::of(stored, false))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskDefinitionsRequest {
    #[serde(default)]
    pub task_definitions: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskDefinitionsResponse {
    pub task_definitions: Vec<taskdef::TaskDefinition>,
    pub failures: Vec<DeleteFailure>,
}

/// ecs.json `Failure` of DeleteTaskDefinitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteFailure {
    pub arn: String,
    pub reason: String,
    pub detail: String,
}

/// DeleteTaskDefinitions: INACTIVE revisions become DELETE_IN_PROGRESS (their numbers are
/// never reused); an ACTIVE one is a failure, to be deregistered first. Ref: ecs.json
/// `DeleteTaskDefinitionsRequest` ("You must specify a revision. You can specify up to 10
/// task definitions"); API_DeleteTaskDefinitions ("you must deregister a task definition
/// revision before you delete it"; the revision moves to DELETE_IN_PROGRESS). The next
/// reconcile pass removes such a revision once no task or service uses it
/// (`Store::purge_deleted_task_definitions`).
pub fn delete_task_definitions(
    ecs: &Ecs,
    req: &DeleteTaskDefinitionsRequest,
) -> EcsResult<DeleteTaskDefinitionsResponse> {
    use taskdef::model::TaskDefinitionStatus;
    if req.task_definitions.is_empty() || req.task_definitions.len() > 10 {
        return Err(EcsError::invalid(format!(
            "taskDefinitions: {} given; name 1 to 10 task definitions (FAMILY:REVISION or ARN)",
            req.task_definitions.len()
        )));
    }
    let mut store = ecs.open_store()?;
    let mut out = DeleteTaskDefinitionsResponse {
        task_definitions: Vec::new(),
        failures: Vec::new(),
    };
    let ctx = AwsContext::from_env();
    for reference in &req.task_definitions {
        super::no_files(reference)?;
        let (family, revision) = match TaskDefRef::parse(reference) {
            Ok(TaskDefRef::Revision(f, r)) => (f, r),
            _ => {
                return Err(EcsError::invalid(format!(
                    "taskDefinitions: {reference:?} must name a revision: FAMILY:REVISION or a \
                     task definition ARN"
                )));
            }
        };
        let arn = ctx.task_definition_arn(&family, revision);
        let fail = |reason: &str, detail: &str| DeleteFailure {
            arn: arn.clone(),
            reason: reason.into(),
            detail: detail.into(),
        };
        match store
            .delete_task_definition(&family, revision)
            .map_err(anyhow::Error::from)?
        {
            None => out.failures.push(fail(
                "TASK_DEFINITION_NOT_FOUND",
                "The specified task definition does not exist",
            )),
            Some(s) if s.status() == TaskDefinitionStatus::Active => out.failures.push(fail(
                "TASK_DEFINITION_IN_USE",
                "The specified task definition is still in ACTIVE status. Please deregister \
                 the target and try again.",
            )),
            Some(s) => out.task_definitions.push(s.definition),
        }
    }
    Ok(out)
}

/// The `status` member of ListTaskDefinitions.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum ListStatus {
    #[default]
    #[value(name = "ACTIVE")]
    Active,
    #[value(name = "INACTIVE")]
    Inactive,
    #[value(name = "DELETE_IN_PROGRESS")]
    DeleteInProgress,
}

/// ListTaskDefinitions: the ARNs, by family then revision (100 a page unless asked).
pub fn list_task_definitions(
    ecs: &Ecs,
    req: &ListTaskDefinitionsRequest,
) -> EcsResult<ListTaskDefinitionsResponse> {
    use taskdef::model::TaskDefinitionStatus;
    let status = match enum_member("status", req.status.as_deref())?.unwrap_or_default() {
        ListStatus::Active => TaskDefinitionStatus::Active,
        ListStatus::Inactive => TaskDefinitionStatus::Inactive,
        ListStatus::DeleteInProgress => TaskDefinitionStatus::DeleteInProgress,
    };
    let sort: SortOrder = enum_member("sort", req.sort.as_deref())?.unwrap_or_default();
    let store = ecs.open_store()?;
    let arns = store
        .list_task_definitions(req.family_prefix.as_deref(), status, sort)
        .map_err(anyhow::Error::from)?;
    let (arns, next_token) = page(arns, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListTaskDefinitionsResponse {
        task_definition_arns: arns,
        next_token,
    })
}

/// ListTaskDefinitionFamilies.
pub fn list_task_definition_families(
    ecs: &Ecs,
    req: &ListTaskDefinitionFamiliesRequest,
) -> EcsResult<ListTaskDefinitionFamiliesResponse> {
    let status: FamilyStatus = enum_member("status", req.status.as_deref())?.unwrap_or_default();
    let store = ecs.open_store()?;
    let families = store
        .list_task_definition_families(req.family_prefix.as_deref(), status)
        .map_err(anyhow::Error::from)?;
    let (families, next_token) = page(families, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListTaskDefinitionFamiliesResponse {
        families,
        next_token,
    })
}

/// A registration that went through, with the warnings validation raised.
#[derive(Debug)]
pub struct Registered {
    pub stored: StoredTaskDefinition,
    pub warnings: Vec<taskdef::Finding>,
}

/// Validates `parsed` as RegisterTaskDefinition would and, if valid, registers it as the next
/// revision of its family. The family is `origin.family` if given, else the definition's
/// own, else (for a bare container array) `origin.fallback_family`. `launch_type` adds the
/// rules of the launch type a RunTask of a file asks for, so a definition it cannot run is
/// not registered either.
pub fn register(
    store: &mut Store,
    mut parsed: taskdef::Parsed,
    origin: Origin<'_>,
    launch_type: Option<taskdef::LaunchType>,
    ctx: &taskdef::AwsContext,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Registered, RegisterError> {
    parsed.as_registered(origin.family, origin.fallback_family);
    let report = taskdef::validate::validate(
        &parsed,
        &taskdef::validate::Options {
            launch_type,
            template: false,
        },
    );
    if !report.valid {
        return Err(RegisterError::Invalid {
            name: origin.name.to_string(),
            report: Box::new(report),
        });
    }
    let tags = parsed.def.tags.clone().unwrap_or_default();
    let def = taskdef::normalize::for_register(&parsed.def);
    let family_name = def.family.clone().unwrap_or_default();
    let stored = store
        .register_task_definition(&def, &tags, ctx, now)
        .map_err(|source| RegisterError::Store {
            family: family_name,
            source,
        })?;
    Ok(Registered {
        stored,
        warnings: report.findings,
    })
}

/// The task definition a run-task will use.
#[derive(Debug)]
pub struct Resolved {
    pub stored: StoredTaskDefinition,
    pub warnings: Vec<taskdef::Finding>,
}

/// Resolves `run-task --task-definition`: `family` (latest ACTIVE revision), `family:rev` or an
/// ARN (that revision, which must be ACTIVE), or `file://path` (validated and registered as a
/// new revision, as the AWS CLI user would have done first).
pub fn resolve(
    store: &mut Store,
    reference: &str,
    ctx: &taskdef::AwsContext,
    launch_type: Option<taskdef::LaunchType>,
) -> Result<Resolved, ResolveError> {
    let lookup_err = |source| ResolveError::Store {
        reference: reference.to_string(),
        source,
    };
    match taskdef::TaskDefRef::parse(reference)? {
        taskdef::TaskDefRef::File(source) => {
            let parsed = taskdef::load(&source).map_err(RegisterError::from)?;
            let r = register(
                store,
                parsed,
                Origin {
                    name: &source.display_name(),
                    family: None,
                    fallback_family: source.default_family(),
                    remote: false,
                },
                launch_type,
                ctx,
                chrono::Utc::now(),
            )?;
            Ok(Resolved {
                stored: r.stored,
                warnings: r.warnings,
            })
        }
        taskdef::TaskDefRef::Latest(family) => {
            let stored = store
                .task_definition(&family, None)
                .map_err(lookup_err)?
                .ok_or_else(|| ResolveError::NotFound(family.clone()))?;
            Ok(Resolved {
                stored,
                warnings: Vec::new(),
            })
        }
        taskdef::TaskDefRef::Revision(family, rev) => {
            let stored = store
                .task_definition(&family, Some(rev))
                .map_err(lookup_err)?
                .ok_or_else(|| ResolveError::NotFound(format!("{family}:{rev}")))?;
            if stored.status() != taskdef::model::TaskDefinitionStatus::Active {
                return Err(ResolveError::Inactive(format!("{family}:{rev}")));
            }
            Ok(Resolved {
                stored,
                warnings: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskdef::AwsContext;

    fn ctx() -> AwsContext {
        AwsContext::defaults()
    }

    const WEB: &str =
        r#"{"family":"web","containerDefinitions":[{"name":"a","image":"b","memory":64}]}"#;

    #[test]
    fn resolve_every_reference_form() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("root")).unwrap();
        let file = dir.path().join("web.json");
        std::fs::write(&file, WEB).unwrap();
        let by_file = resolve(
            &mut store,
            &format!("file://{}", file.display()),
            &ctx(),
            None,
        )
        .unwrap();
        assert_eq!(by_file.stored.revision(), 1);
        resolve(
            &mut store,
            &format!("file://{}", file.display()),
            &ctx(),
            None,
        )
        .unwrap();
        assert_eq!(
            resolve(&mut store, "web", &ctx(), None)
                .unwrap()
                .stored
                .revision(),
            2
        );
        assert_eq!(
            resolve(&mut store, "web:1", &ctx(), None)
                .unwrap()
                .stored
                .revision(),
            1
        );
        let arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2";
        assert_eq!(
            resolve(&mut store, arn, &ctx(), None)
                .unwrap()
                .stored
                .revision(),
            2
        );
        store
            .deregister_task_definition("web", 1, chrono::Utc::now())
            .unwrap();
        assert!(matches!(
            resolve(&mut store, "web:1", &ctx(), None),
            Err(ResolveError::Inactive(_))
        ));
        assert!(matches!(
            resolve(&mut store, "nope", &ctx(), None),
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            resolve(&mut store, "web:9", &ctx(), None),
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            resolve(&mut store, "bad name", &ctx(), None),
            Err(ResolveError::BadRef(_))
        ));
    }

    #[test]
    fn invalid_files_are_not_registered() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let file = dir.path().join("bad.json");
        std::fs::write(
            &file,
            r#"{"family":"bad","containerDefinitions":[{"name":"a"}]}"#,
        )
        .unwrap();
        let err = resolve(
            &mut store,
            &format!("file://{}", file.display()),
            &ctx(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(err, ResolveError::Register(RegisterError::Invalid { .. })),
            "{err}"
        );
        assert!(store.task_definition("bad", None).unwrap().is_none());
    }

    #[test]
    fn bare_arrays_take_the_file_name_as_family() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let file = dir.path().join("containers.json");
        std::fs::write(&file, r#"[{"name":"a","image":"b","memory":32}]"#).unwrap();
        let r = resolve(
            &mut store,
            &format!("file://{}", file.display()),
            &ctx(),
            None,
        )
        .unwrap();
        assert_eq!(r.stored.family(), "containers");
    }
}
