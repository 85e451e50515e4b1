//! The coverage tables: what serve does with every input member of every operation it
//! answers, for the seven services (issue 74) — applied (and where), refused (with which of
//! AWS's errors, when), or accepted and reported as not applied (and where it is reported).
//!
//! Nothing silent: a test walks botocore's models (the ones the AWS CLI carries) for the
//! operations each service routes (their lists in the cores, not written here) and fails on
//! a member without a row and on a row naming no member; `docs/coverage/<service>.md` is
//! rendered from the rows. A not-applied member present in a request is named in serve's
//! log ([`report`]), whatever else the operation says about it.

mod aas;
mod cloudmap;
mod cloudwatch;
mod ecr;
mod ecs;
mod elb;
mod logs;
#[cfg(test)]
mod tests;

use serde_json::Value;

/// What serve does with a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// It has an effect (the note says where).
    Applied,
    /// Refused with AWS's error (the note says which, and when); other values are applied.
    Refused,
    /// Accepted and not applied (the note says why and where it is reported).
    NotApplied,
}

impl Class {
    #[cfg(test)]
    pub fn label(self) -> &'static str {
        match self {
            Class::Applied => "applied",
            Class::Refused => "refused",
            Class::NotApplied => "not applied",
        }
    }
}

/// One member of one or more operations: `ops` (space-separated operation names), its path
/// in the request (`a.b`, `[]` for list elements; a map is a leaf), its class and what
/// happens here. A `whole` row covers the member's own members too: the operation keeps or
/// refuses the structure as one value and reads nothing inside it.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub ops: &'static str,
    pub path: &'static str,
    pub class: Class,
    pub note: &'static str,
    pub whole: bool,
    /// Values of a not-applied member that ask for what serve does anyway (`ipv4`): a
    /// request with one of them is not named in the log.
    pub except: &'static [&'static str],
}

impl Row {
    /// This row also covers every member below `path`.
    pub const fn whole(self) -> Row {
        Row {
            whole: true,
            ..self
        }
    }

    /// Values that ask for what serve does anyway (see [`Row::except`]).
    pub const fn except(self, values: &'static [&'static str]) -> Row {
        Row {
            except: values,
            ..self
        }
    }

    pub fn has_op(&self, op: &str) -> bool {
        self.ops.split_ascii_whitespace().any(|o| o == op)
    }
}

/// An applied member: `note` says where it has its effect.
pub const fn ap(ops: &'static str, path: &'static str, note: &'static str) -> Row {
    Row {
        ops,
        path,
        class: Class::Applied,
        note,
        whole: false,
        except: &[],
    }
}

/// A member (or some of its values) refused: `note` names AWS's error and when.
pub const fn rf(ops: &'static str, path: &'static str, note: &'static str) -> Row {
    Row {
        ops,
        path,
        class: Class::Refused,
        note,
        whole: false,
        except: &[],
    }
}

/// A member accepted and not applied: `note` says why and where else it is reported
/// (serve's log always names it: [`report`]).
pub const fn na(ops: &'static str, path: &'static str, note: &'static str) -> Row {
    Row {
        ops,
        path,
        class: Class::NotApplied,
        note,
        whole: false,
        except: &[],
    }
}

/// One service's table: its botocore model, the operations serve routes (from the core's
/// own list), the rows, and the operations whose members another table classifies.
// The model, the operations and the other tables are read by the test (`tests.rs`).
#[cfg_attr(not(test), allow(dead_code))]
pub struct Service {
    /// The file under docs/coverage/ and the service's name in the log.
    pub slug: &'static str,
    pub title: &'static str,
    /// botocore's `data/<model.0>/<model.1>/service-2.json`.
    pub model: (&'static str, &'static str),
    pub operations: fn() -> Vec<&'static str>,
    pub rows: &'static [Row],
    /// Operations classified elsewhere: (operation, where, that table's rows as
    /// (path, class, note), checked against the model as these rows are).
    pub elsewhere: fn() -> Vec<Elsewhere>,
}

/// An operation whose members another table classifies (RunTask's and RegisterTaskDefinition's
/// in `taskdef::coverage`, rendered in docs/taskdefs.md).
#[cfg_attr(not(test), allow(dead_code))]
pub struct Elsewhere {
    pub op: &'static str,
    pub doc: &'static str,
    pub rows: Vec<(&'static str, Class, &'static str)>,
    /// The other table may also hold members that are not in the request (a
    /// describe-task-definition output's, accepted on input).
    pub superset: bool,
}

pub fn none() -> Vec<Elsewhere> {
    Vec::new()
}

/// Every service's table, in the order of issue 74.
pub static SERVICES: &[&Service] = &[
    &ecs::ECS,
    &elb::ELB,
    &cloudwatch::CLOUDWATCH,
    &aas::AAS,
    &logs::LOGS,
    &ecr::ECR,
    &cloudmap::CLOUDMAP,
];

/// The table of the service named `slug`.
pub fn service(slug: &str) -> Option<&'static Service> {
    SERVICES.iter().copied().find(|s| s.slug == slug)
}

/// The not-applied members present in `op`'s request `body` (JSON), as (path, note): the
/// first not-applied member on each path down (its own members are not named again).
pub fn not_applied(svc: &Service, op: &str, body: &Value) -> Vec<(String, &'static str)> {
    let rows: Vec<&Row> = svc.rows.iter().filter(|r| r.has_op(op)).collect();
    let mut out = Vec::new();
    walk(&rows, body, "", &mut out);
    out
}

fn walk(rows: &[&Row], v: &Value, prefix: &str, out: &mut Vec<(String, &'static str)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if crate::taskdef::coverage::is_unset(child) {
                    continue;
                }
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let row = rows.iter().find(|r| r.path == path);
                match row {
                    Some(r) if r.class == Class::NotApplied => {
                        let asked = child
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or(child.to_string());
                        if !r.except.contains(&asked.as_str()) {
                            out.push((path, r.note));
                        }
                    }
                    Some(r) if r.whole => {}
                    _ => walk(rows, child, &path, out),
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                walk(rows, child, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Names in serve's log each not-applied member present in `op`'s request `body` of the
/// service `slug`. Called once the request is decoded (a refused request applies nothing).
pub fn report(slug: &str, op: &str, body: &Value) {
    let Some(svc) = service(slug) else { return };
    for (member, why) in not_applied(svc, op, body) {
        tracing::warn!(service = svc.title, operation = op, member = %member,
            "{op}: {member}: not applied here: {why}");
    }
}

/// `report` for a JSON body given as bytes (nothing when it is not JSON: the operation
/// refuses it).
pub fn report_bytes(slug: &str, op: &str, body: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        report(slug, op, &v);
    }
}

/// An awsQuery form as the JSON of its members, for [`not_applied`]: `A.member.1.B` is
/// `{"A": [{"B": …}]}` (every element's members in one element), a map's `A.entry.1.key` is
/// `{"A": …}` (a map is a leaf), `Action` and `Version` left out.
pub fn query_paths(form: &[u8]) -> Value {
    let mut root = Value::Object(Default::default());
    for (k, v) in form_urlencoded::parse(form) {
        if k != "Action" && k != "Version" {
            let parts: Vec<&str> = k.split('.').collect();
            insert(&mut root, &parts, &v);
        }
    }
    root
}

fn insert(node: &mut Value, parts: &[&str], v: &str) {
    let (Some(name), Value::Object(map)) = (parts.first(), node) else {
        return;
    };
    let rest = &parts[1..];
    match rest.first() {
        None | Some(&"entry") => {
            map.entry(name.to_string())
                .or_insert_with(|| Value::String(v.to_string()));
        }
        Some(&"member") if rest.len() <= 2 => {
            map.entry(name.to_string())
                .or_insert_with(|| Value::Array(vec![Value::String(v.to_string())]));
        }
        Some(&"member") => {
            let list = map
                .entry(name.to_string())
                .or_insert_with(|| Value::Array(vec![Value::Object(Default::default())]));
            if let Some(first) = list.as_array_mut().and_then(|a| a.first_mut()) {
                insert(first, &rest[2..], v);
            }
        }
        Some(_) => {
            let child = map
                .entry(name.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            insert(child, rest, v);
        }
    }
}
