//! ECS task definitions: the serde model, parsing of every shape users keep them in, ECS and
//! Fargate validation, and registration into families and revisions in the state store.
//!
//! The entry points: [`load`] + [`validate::validate`] for `validate`, [`register`] for
//! `register-task-definition`, and [`resolve`] for `run-task --task-definition web:3 | web |
//! file://taskdef.json`.

pub mod arn;
pub mod finding;
pub mod model;
pub mod normalize;
pub mod parse;
pub mod units;
pub mod validate;

pub use arn::{AwsContext, TaskDefRef};
pub use finding::{Code, Finding, Severity};
pub use model::TaskDefinition;
pub use parse::{Parsed, ReadError, Shape, Source};
pub use validate::{LaunchType, Report};

use crate::store::{Store, StoreError, StoredTaskDefinition};
use chrono::{DateTime, Utc};
use model::TaskDefinitionStatus;

/// Reads and parses a task definition from a file or standard input.
pub fn load(source: &Source) -> Result<Parsed, ReadError> {
    Ok(parse::parse_str(&source.read_to_string()?))
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("task definition {name} is invalid: {} error(s)", report.errors)]
    Invalid { name: String, report: Box<Report> },
    #[error("failed to register task definition family {family}")]
    Store {
        family: String,
        #[source]
        source: StoreError,
    },
}

/// A registration that went through, with the warnings validation raised.
#[derive(Debug)]
pub struct Registered {
    pub stored: StoredTaskDefinition,
    pub warnings: Vec<Finding>,
}

/// Validates `parsed` as RegisterTaskDefinition would and, if valid, registers it as the next
/// revision of its family. The family is `family` if given, else the definition's own, else
/// (for a bare container array) `fallback_family`.
pub fn register(
    store: &mut Store,
    mut parsed: Parsed,
    name: &str,
    family: Option<&str>,
    fallback_family: Option<String>,
    ctx: &AwsContext,
    now: DateTime<Utc>,
) -> Result<Registered, RegisterError> {
    if let Some(f) = family {
        parsed.def.family = Some(f.to_string());
    } else if parsed.def.family.as_deref().is_none_or(str::is_empty)
        && parsed.shape == Shape::ContainerArray
    {
        parsed.def.family = fallback_family;
    }
    // Registering makes a whole task definition out of a bare container array: the
    // task-level rules apply from here on.
    if parsed.shape == Shape::ContainerArray {
        parsed.shape = Shape::RegisterInput;
    }
    let mut report = validate::validate(&parsed, &validate::Options::default());
    // `validate` lets a template through with warnings; a registered revision needs values.
    for f in report
        .findings
        .iter_mut()
        .filter(|f| f.rule == "template-placeholder")
    {
        f.severity = Severity::Error;
        f.code = Code::ClientException;
        f.message = format!("{}; fill it in before registering", f.message);
        report.valid = false;
        report.errors += 1;
        report.warnings -= 1;
    }
    report.findings.sort_by_key(|f| f.severity);
    if !report.valid {
        return Err(RegisterError::Invalid {
            name: name.to_string(),
            report: Box::new(report),
        });
    }
    let tags = parsed.def.tags.clone().unwrap_or_default();
    let def = normalize::for_register(&parsed.def);
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

#[derive(Debug, thiserror::Error)]
#[allow(dead_code, reason = "returned by resolve, which run-task calls")]
pub enum ResolveError {
    #[error(transparent)]
    BadRef(#[from] arn::BadRef),
    #[error(
        "ClientException: Unable to describe task definition {0}: it is not registered (see \
         `minifargate list-task-definitions`)"
    )]
    NotFound(String),
    #[error("ClientException: TaskDefinition {0} is inactive")]
    Inactive(String),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("failed to look up task definition {reference}")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
}

/// The task definition a run-task will use.
#[derive(Debug)]
#[allow(dead_code, reason = "returned by resolve, which run-task calls")]
pub struct Resolved {
    pub stored: StoredTaskDefinition,
    /// True when the reference was a file that was registered on the way.
    pub registered: bool,
    pub warnings: Vec<Finding>,
}

/// Resolves `run-task --task-definition`: `family` (latest ACTIVE revision), `family:rev` or an
/// ARN (that revision, which must be ACTIVE), or `file://path` (validated and registered as a
/// new revision, as the AWS CLI user would have done first).
#[allow(dead_code, reason = "the entry point run-task calls")]
pub fn resolve(
    store: &mut Store,
    reference: &str,
    ctx: &AwsContext,
) -> Result<Resolved, ResolveError> {
    let lookup_err = |source| ResolveError::Store {
        reference: reference.to_string(),
        source,
    };
    match TaskDefRef::parse(reference)? {
        TaskDefRef::File(source) => {
            let parsed = load(&source).map_err(RegisterError::from)?;
            let r = register(
                store,
                parsed,
                &source.display_name(),
                None,
                source.default_family(),
                ctx,
                Utc::now(),
            )?;
            Ok(Resolved {
                stored: r.stored,
                registered: true,
                warnings: r.warnings,
            })
        }
        TaskDefRef::Latest(family) => {
            let stored = store
                .task_definition(&family, None)
                .map_err(lookup_err)?
                .ok_or_else(|| ResolveError::NotFound(family.clone()))?;
            Ok(Resolved {
                stored,
                registered: false,
                warnings: Vec::new(),
            })
        }
        TaskDefRef::Revision(family, rev) => {
            let stored = store
                .task_definition(&family, Some(rev))
                .map_err(lookup_err)?
                .ok_or_else(|| ResolveError::NotFound(format!("{family}:{rev}")))?;
            if stored.status() != TaskDefinitionStatus::Active {
                return Err(ResolveError::Inactive(format!("{family}:{rev}")));
            }
            Ok(Resolved {
                stored,
                registered: false,
                warnings: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> AwsContext {
        AwsContext {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        }
    }

    const WEB: &str =
        r#"{"family":"web","containerDefinitions":[{"name":"a","image":"b","memory":64}]}"#;

    #[test]
    fn resolve_every_reference_form() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("root")).unwrap();
        let file = dir.path().join("web.json");
        std::fs::write(&file, WEB).unwrap();
        let by_file = resolve(&mut store, &format!("file://{}", file.display()), &ctx()).unwrap();
        assert!(by_file.registered);
        assert_eq!(by_file.stored.revision(), 1);
        resolve(&mut store, &format!("file://{}", file.display()), &ctx()).unwrap();
        assert_eq!(
            resolve(&mut store, "web", &ctx())
                .unwrap()
                .stored
                .revision(),
            2
        );
        assert_eq!(
            resolve(&mut store, "web:1", &ctx())
                .unwrap()
                .stored
                .revision(),
            1
        );
        let arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2";
        assert_eq!(
            resolve(&mut store, arn, &ctx()).unwrap().stored.revision(),
            2
        );
        store
            .deregister_task_definition("web", 1, Utc::now())
            .unwrap();
        assert!(matches!(
            resolve(&mut store, "web:1", &ctx()),
            Err(ResolveError::Inactive(_))
        ));
        assert!(matches!(
            resolve(&mut store, "nope", &ctx()),
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            resolve(&mut store, "web:9", &ctx()),
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            resolve(&mut store, "bad name", &ctx()),
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
        let err = resolve(&mut store, &format!("file://{}", file.display()), &ctx()).unwrap_err();
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
        let r = resolve(&mut store, &format!("file://{}", file.display()), &ctx()).unwrap();
        assert_eq!(r.stored.family(), "containers");
    }

    /// Parsing and validation never panic: every truncation of real files, and every member
    /// replaced by a value of each other JSON type, gives findings, not a crash.
    #[test]
    fn never_panics_on_mangled_input() {
        use serde_json::{Value, json};
        let docs = [
            include_str!("../../examples/web.json"),
            include_str!("../../examples/fargate-api-firelens.json"),
            include_str!("../../examples/ec2-bridge-links.json"),
            include_str!("../../examples/container-definitions.json"),
        ];
        let replacements = [
            json!(null),
            json!(-1),
            json!(0),
            json!(1e300),
            json!(i64::MAX),
            json!("x"),
            json!(""),
            json!([]),
            json!([null]),
            json!({}),
            json!(true),
        ];
        let check = |v: Value| {
            for lt in [None, Some(LaunchType::Fargate)] {
                let parsed = parse::parse_value(v.clone());
                let _ = validate::validate(&parsed, &validate::Options { launch_type: lt });
                let _ = normalize::for_register(&parsed.def);
            }
        };
        for doc in docs {
            for cut in (0..doc.len())
                .step_by(7)
                .filter(|i| doc.is_char_boundary(*i))
            {
                let _ = validate::validate(
                    &parse::parse_str(&doc[..cut]),
                    &validate::Options::default(),
                );
            }
            let original: Value = serde_json::from_str(doc).unwrap();
            // Every node path of the document.
            let mut paths: Vec<Vec<Value>> = Vec::new();
            let mut stack: Vec<(Vec<Value>, &Value)> = vec![(Vec::new(), &original)];
            while let Some((p, v)) = stack.pop() {
                match v {
                    Value::Object(m) => {
                        for (k, c) in m {
                            let mut q = p.clone();
                            q.push(json!(k));
                            stack.push((q, c));
                        }
                    }
                    Value::Array(a) => {
                        for (i, c) in a.iter().enumerate() {
                            let mut q = p.clone();
                            q.push(json!(i));
                            stack.push((q, c));
                        }
                    }
                    _ => {}
                }
                paths.push(p);
            }
            for path in &paths {
                for r in &replacements {
                    let mut v = original.clone();
                    let mut slot = &mut v;
                    for seg in path {
                        slot = match seg {
                            Value::String(k) => &mut slot[k.as_str()],
                            Value::Number(n) => &mut slot[n.as_u64().unwrap() as usize],
                            _ => unreachable!(),
                        };
                    }
                    *slot = r.clone();
                    check(v);
                }
            }
        }
    }
}
