//! ECS task definitions, pure: the serde model, parsing of every shape users keep them in,
//! ECS and Fargate validation, normalisation and units. Nothing here touches the state
//! store: registration and resolution are ECS operations (`crate::ecs::task_definitions`).
//!
//! The entry points: [`load`] + [`validate::validate`] for `validate`, and
//! [`normalize::for_register`] for what a registered revision stores.

pub mod arn;
pub mod coverage;
pub mod finding;
pub mod members;
pub mod model;
pub mod normalize;
pub mod parse;
pub mod query;
pub mod security_options;
pub mod timestamp;
pub mod units;
pub mod unknown;
pub mod validate;

pub use arn::{AwsContext, TaskDefRef};
pub use finding::{Finding, Severity};
pub use model::TaskDefinition;
pub use parse::{Parsed, ReadError, Shape, Source};
pub use validate::{LaunchType, Report};

/// Reads and parses a task definition from a file or standard input.
pub fn load(source: &Source) -> Result<Parsed, ReadError> {
    Ok(parse::parse_str(&source.read_to_string()?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                let _ = validate::validate(
                    &parsed,
                    &validate::Options {
                        launch_type: lt,
                        template: false,
                    },
                );
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
