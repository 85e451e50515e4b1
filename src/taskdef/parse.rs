//! Reading a task definition the way users have it: a path, `file://path` or `-`, holding the
//! register input, a describe output (wrapped or not) or a bare `containerDefinitions` array.
//!
//! Parsing never stops at the first problem. JSON syntax errors carry line and column; a member
//! of the wrong JSON type is reported with its path, dropped, and decoding goes on, so that one
//! run reports every type error; members the ECS model does not have are warnings.

use super::finding::{Code, Finding, JsonPath, Seg};
use super::model::{Tag, TaskDefinition};
use super::unknown::{READ_ONLY, ignored_path, path_of};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a task definition comes from, as the AWS CLI spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
    /// JSON given inline on the command line (`--cli-input-json '{"family": …}'`, which
    /// the AWS CLI takes).
    Inline(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read task definition {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read task definition from standard input")]
    ReadStdin(#[source] std::io::Error),
    #[error("task definition {0} is not UTF-8 text")]
    NotUtf8(String),
}

impl Source {
    /// `-` is standard input, `file://PATH` and a plain `PATH` are files.
    pub fn from_arg(arg: &str) -> Source {
        if arg == "-" {
            return Source::Stdin;
        }
        if arg.trim_start().starts_with(['{', '[']) {
            return Source::Inline(arg.to_string());
        }
        match arg.strip_prefix("file://") {
            Some(p) => Source::File(expand_home(p)),
            None => Source::File(PathBuf::from(arg)),
        }
    }

    pub fn display_name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Stdin => "<stdin>".to_string(),
            Source::Inline(_) => "<cli-input-json>".to_string(),
        }
    }

    pub fn read_to_string(&self) -> Result<String, ReadError> {
        let bytes = match self {
            Source::File(p) => std::fs::read(p).map_err(|source| ReadError::ReadFile {
                path: p.clone(),
                source,
            })?,
            Source::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(ReadError::ReadStdin)?;
                buf
            }
            Source::Inline(text) => return Ok(text.clone()),
        };
        String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8(self.display_name()))
    }

    /// A family name derived from the file name, for bare `containerDefinitions` arrays that
    /// carry none: `web-taskdef.json` → `web-taskdef`.
    pub fn default_family(&self) -> Option<String> {
        let Source::File(p) = self else { return None };
        let stem = Path::new(p).file_stem()?.to_str()?;
        let family: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(255)
            .collect();
        (!family.is_empty()).then_some(family)
    }
}

/// A `file://` path as the AWS CLI resolves it: a leading `~` or `~/` is $HOME (Python's
/// `os.path.expanduser`), anything else as given (relative to the working directory).
pub fn expand_home(p: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    if p == "~" {
        if let Some(h) = home() {
            return h;
        }
    } else if let Some(rest) = p.strip_prefix("~/")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    PathBuf::from(p)
}

/// Which of the accepted layouts the input had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// The `RegisterTaskDefinition` input (`aws ecs register-task-definition --cli-input-json`).
    RegisterInput,
    /// A `describe-task-definition` output's `taskDefinition`, unwrapped.
    DescribeOutput,
    /// A whole `describe-task-definition` output: `{"taskDefinition": {…}, "tags": […]}`.
    DescribeWrapped,
    /// A bare `containerDefinitions` array (Terraform's `container_definitions`): task-level
    /// settings are unknown.
    ContainerArray,
    /// Not JSON, or not a task definition at all.
    Unreadable,
}

#[derive(Debug, Clone)]
pub struct Parsed {
    pub shape: Shape,
    pub def: TaskDefinition,
    /// Syntax and type errors, and unknown-member warnings.
    pub findings: Vec<Finding>,
    /// Members dropped because of type errors: validation findings at or below these paths
    /// are consequences of the type error and are not reported again.
    pub dropped: Vec<JsonPath>,
}

impl Parsed {
    /// `--lenient`: members the ECS model does not have are ignored with a warning instead
    /// of refused (what minifargate did before it refused them like the AWS CLI).
    pub fn lenient(&mut self) {
        for f in self
            .findings
            .iter_mut()
            .filter(|f| f.rule == "unknown-member")
        {
            f.severity = super::Severity::Warning;
            f.code = Code::Lint;
            f.message = format!("ignored (--lenient): {}", f.message);
        }
    }

    /// Makes this input the task definition RegisterTaskDefinition registers: `family` (the
    /// `--family` flag) wins over the definition's own; a bare containerDefinitions array
    /// without one takes `fallback_family` (its file name) and becomes a whole task
    /// definition, so the task-level rules apply to it as they will once it is registered.
    pub fn as_registered(&mut self, family: Option<&str>, fallback_family: Option<String>) {
        if let Some(f) = family {
            self.def.family = Some(f.to_string());
        } else if self.def.family.as_deref().is_none_or(str::is_empty)
            && self.shape == Shape::ContainerArray
        {
            self.def.family = fallback_family;
        }
        if self.shape == Shape::ContainerArray {
            self.shape = Shape::RegisterInput;
        }
    }
}

/// Parses task definition text in any accepted shape.
pub fn parse_str(text: &str) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let mut f = Finding::error(
                Code::SerializationException,
                "json-syntax",
                JsonPath::root(),
                format!("invalid JSON: {}", strip_position(&e.to_string())),
            );
            f.line = Some(e.line());
            f.column = Some(e.column());
            return Parsed {
                shape: Shape::Unreadable,
                def: TaskDefinition::default(),
                findings: vec![f],
                dropped: Vec::new(),
            };
        }
    };
    parse_value(value)
}

/// Parses an already-decoded JSON value in any accepted shape.
pub fn parse_value(mut value: Value) -> Parsed {
    let mut emptied = Vec::new();
    drop_empty(&mut value, &mut Vec::new(), &mut emptied);
    let mut findings = Vec::new();
    let mut dropped = Vec::new();
    let (shape, mut def_value, wrapper_tags) = match value {
        Value::Array(items) => {
            let mut obj = serde_json::Map::new();
            obj.insert("containerDefinitions".to_string(), Value::Array(items));
            (Shape::ContainerArray, Value::Object(obj), None)
        }
        Value::Object(mut obj) if obj.get("taskDefinition").is_some_and(Value::is_object) => {
            let inner = obj.remove("taskDefinition").unwrap_or(Value::Null);
            let tags = obj.remove("tags");
            obj.remove("ResponseMetadata");
            let names = ["taskDefinition".to_string(), "tags".to_string()];
            for key in obj.keys() {
                let path = JsonPath::root().key(key);
                findings.push(unknown_member(
                    &path,
                    super::unknown::message_with(&path, &names),
                ));
            }
            (Shape::DescribeWrapped, inner, tags)
        }
        Value::Object(obj) => {
            let shape = if READ_ONLY.iter().any(|k| obj.contains_key(*k)) {
                Shape::DescribeOutput
            } else {
                Shape::RegisterInput
            };
            (shape, Value::Object(obj), None)
        }
        other => {
            findings.push(Finding::error(
                Code::SerializationException,
                "json-shape",
                JsonPath::root(),
                format!(
                    "expected a task definition object or a containerDefinitions array, \
                     found {}",
                    json_kind(&other)
                ),
            ));
            return Parsed {
                shape: Shape::Unreadable,
                def: TaskDefinition::default(),
                findings,
                dropped,
            };
        }
    };

    findings.extend(emptied.iter().filter_map(|e| emptied_finding(e, shape)));

    // A describe output fed back: its read-only members are accepted (ECS fills them in on
    // register), with a note so nobody thinks they are registered as written.
    let read_only: Vec<&str> = READ_ONLY
        .iter()
        .copied()
        .filter(|k| def_value.get(k).is_some())
        .collect();
    if !read_only.is_empty() {
        findings.push(Finding::warning(
            "describe-output-member",
            JsonPath::root(),
            format!(
                "{} {} of a describe-task-definition output, accepted and ignored (ECS sets \
                 them when it registers a revision)",
                read_only.join(", "),
                if read_only.len() == 1 {
                    "is a member"
                } else {
                    "are members"
                }
            ),
        ));
    }
    let mut def: TaskDefinition = decode_collect(
        &mut def_value,
        &JsonPath::root(),
        &mut findings,
        &mut dropped,
    );
    if let Some(mut tags_value) = wrapper_tags {
        let tags: Option<Vec<Tag>> = decode_collect(
            &mut tags_value,
            &JsonPath::root().key("tags"),
            &mut findings,
            &mut dropped,
        );
        if tags.is_some() {
            def.tags = tags;
        }
    }
    Parsed {
        shape,
        def,
        findings,
        dropped,
    }
}

/// Decodes `value` into `T`, recording every type error instead of stopping at the first:
/// the offending member is replaced by `null` (every model member is optional) and decoding
/// runs again. Where `null` is not accepted either (an element of a list), the enclosing
/// member is dropped instead. Unknown members are recorded as warnings.
fn decode_collect<T: DeserializeOwned + Default>(
    value: &mut Value,
    base: &JsonPath,
    findings: &mut Vec<Finding>,
    dropped: &mut Vec<JsonPath>,
) -> T {
    use std::collections::HashMap;
    #[derive(Clone, Copy, PartialEq)]
    enum Tried {
        Null,
        EmptyObject,
    }
    // What was put in place of each bad member so far. Every round replaces one node, at most
    // twice, or climbs one level, so this bound is never reached by a well-behaved decoder.
    let mut tried: HashMap<String, Tried> = HashMap::new();
    refuse_arrays_for_objects::<T>(value, base, findings, dropped);
    let max_rounds = 3 * count_nodes(value) + 4;
    for _ in 0..max_rounds {
        let mut unknown = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let result: Result<T, serde_json::Error> = {
            let de = serde_path_to_error::Deserializer::new(&*value, &mut track);
            serde_ignored::deserialize(de, |p| unknown.push(ignored_path(&p)))
        };
        let e = match result {
            Ok(t) => {
                for p in unknown {
                    let message = super::unknown::message::<T>(base, &p);
                    findings.push(unknown_member(&join(base, &p), message));
                }
                return t;
            }
            Err(e) => e,
        };
        let mut at = path_of(&track.path());
        if !tried.contains_key(&at.to_string())
            && let Some(slot) = get_mut(value, &at)
            && let Some(fixed) = coerce(slot, &e.to_string())
        {
            // "3000" where the model has a number: the ECS service reads such JSON leniently,
            // and files that deployments register every day have it. Read it, but say so.
            findings.push(Finding::warning(
                "coerced-value",
                join(base, &at),
                format!(
                    "{slot} should be written {fixed} (ECS's model has a {}); read as {fixed}",
                    json_kind(&fixed).trim_start_matches("a ")
                ),
            ));
            *slot = fixed;
            continue;
        }
        if !tried.contains_key(&at.to_string()) {
            // A new problem (not a consequence of a replacement made here): report it. A
            // template placeholder where a number belongs ("${memory}") is not a mistake in
            // the file but a value still to come: a warning, and the member is left unchecked.
            match get_mut(value, &at) {
                Some(Value::String(s)) if is_placeholder(s) => {
                    findings.push(placeholder(&join(base, &at), s))
                }
                _ => findings.push(type_error(base, &at, &e)),
            }
            dropped.push(join(base, &at));
        }
        loop {
            let parent_is_list = {
                let mut parent = at.clone();
                parent.0.pop();
                !at.is_root() && get_mut(value, &parent).is_some_and(|p| p.is_array())
            };
            let key = at.to_string();
            let Some(slot) = get_mut(value, &at) else {
                return T::default();
            };
            match tried.get(&key) {
                None if !slot.is_null() => {
                    *slot = Value::Null;
                    tried.insert(key, Tried::Null);
                    break;
                }
                None | Some(Tried::Null) if parent_is_list => {
                    // A list element that cannot be null: an empty object keeps the other
                    // elements (and their indices) for validation.
                    *slot = Value::Object(serde_json::Map::new());
                    tried.insert(key, Tried::EmptyObject);
                    break;
                }
                _ if at.is_root() => return T::default(),
                _ => {
                    // Neither works here: drop the enclosing member instead.
                    at.0.pop();
                    dropped.push(join(base, &at));
                }
            }
        }
    }
    T::default()
}

/// serde's derived structs also read a JSON array, positionally (its first element as the
/// first field), so `"logConfiguration": [{"logDriver": "awslogs"}]`, a slip some published
/// snippets make, would be reported as a puzzle about `logDriver`'s enum and the array's
/// length. ECS reads a structure from an object only: an array where the model has an object
/// is one type error at that member, which is then dropped like any mistyped member.
/// Ref: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html
/// (logConfiguration, healthCheck, linuxParameters, … are of type "object").
fn refuse_arrays_for_objects<T: DeserializeOwned>(
    value: &mut Value,
    base: &JsonPath,
    findings: &mut Vec<Finding>,
    dropped: &mut Vec<JsonPath>,
) {
    // A pattern (`containerDefinitions[].logConfiguration`) is an object in the model when
    // some member path continues below it.
    let objects: std::collections::HashSet<String> = super::members::paths::<T>()
        .iter()
        .flat_map(|p| p.match_indices('.').map(|(i, _)| p[..i].to_string()))
        .collect();
    fn walk(
        v: &mut Value,
        at: &mut JsonPath,
        pattern: &str,
        objects: &std::collections::HashSet<String>,
        out: &mut Vec<JsonPath>,
    ) {
        match v {
            Value::Array(_) if !pattern.is_empty() && objects.contains(pattern) => {
                out.push(at.clone());
                *v = Value::Null;
            }
            Value::Array(a) => {
                for (i, c) in a.iter_mut().enumerate() {
                    at.0.push(Seg::Index(i));
                    walk(c, at, &format!("{pattern}[]"), objects, out);
                    at.0.pop();
                }
            }
            Value::Object(m) => {
                for (k, c) in m.iter_mut() {
                    let child = if pattern.is_empty() {
                        k.clone()
                    } else {
                        format!("{pattern}.{k}")
                    };
                    at.0.push(Seg::Key(k.clone()));
                    walk(c, at, &child, objects, out);
                    at.0.pop();
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, &mut JsonPath::root(), "", &objects, &mut found);
    for at in found {
        let path = join(base, &at);
        findings.push(Finding::error(
            Code::SerializationException,
            "json-type",
            path.clone(),
            "invalid type: array, expected an object",
        ));
        dropped.push(path);
    }
}

/// Whether a string is a template placeholder rather than a value: `${memory}`,
/// `{{ .Image }}`, `#{Tag}`, `<IMAGE_NAME>`.
pub fn is_placeholder(s: &str) -> bool {
    let t = s.trim();
    t.contains("${")
        || t.contains("{{")
        || t.contains("#{")
        || (t.len() > 2 && t.starts_with('<') && t.ends_with('>'))
}

/// The warning for a template placeholder where ECS needs a real value.
pub fn placeholder(path: &JsonPath, s: &str) -> Finding {
    Finding::warning(
        "template-placeholder",
        path.clone(),
        format!("{s:?} looks like a template placeholder: this member is not checked"),
    )
}

/// The value a mistyped scalar stands for, when there is no doubt: an integer written as a
/// string (`"3000"`) or as a whole float (`512.0`), a boolean written as `"true"`/`"false"`.
fn coerce(v: &Value, serde_msg: &str) -> Option<Value> {
    if serde_msg.contains("expected i64") {
        return match v {
            Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| Value::from(f as i64)),
            _ => None,
        };
    }
    if serde_msg.contains("expected a boolean") {
        return match v {
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
            _ => None,
        };
    }
    None
}

/// One step of a path in the document as given (before a wrapper or a bare array is
/// unwrapped).
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Drops members whose value is null, `""`, or a list or object of nothing but such values,
/// recursively, as the AWS-maintained GitHub Action amazon-ecs-deploy-task-definition does
/// before it registers a file: `"taskRoleArn": ""` or `"repositoryCredentials":
/// {"credentialsParameter": ""}` mean "not set" in the files people deploy. List elements are
/// kept, so JSON paths stay those of the file. Objects that had members, all empty (e.g.
/// `"healthCheck": {"command": []}`), are recorded in `emptied`: dropping them changes what
/// the file asks for, so it is said (see [`emptied_finding`]); bare nulls, `""` and `[]`, which
/// describe outputs are full of, are not.
fn drop_empty(v: &mut Value, at: &mut Vec<Step>, emptied: &mut Vec<Vec<Step>>) {
    // Recursion is bounded: serde_json refuses documents nested deeper than 128.
    fn is_empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.iter().all(is_empty),
            Value::Object(m) => m.values().all(is_empty),
            _ => false,
        }
    }
    match v {
        Value::Object(m) => {
            for (k, c) in m.iter_mut() {
                at.push(Step::Key(k.clone()));
                if matches!(c, Value::Object(o) if !o.is_empty()) && is_empty(c) {
                    emptied.push(at.clone());
                } else {
                    drop_empty(c, at, emptied);
                }
                at.pop();
            }
            m.retain(|_, c| !is_empty(c));
        }
        Value::Array(a) => {
            for (i, c) in a.iter_mut().enumerate() {
                at.push(Step::Index(i));
                drop_empty(c, at, emptied);
                at.pop();
            }
        }
        _ => {}
    }
}

/// The warning for an object dropped because all its members were empty, at its path in the
/// task definition (`shape` says how the document wraps it), or `None` outside it.
fn emptied_finding(steps: &[Step], shape: Shape) -> Option<Finding> {
    let mut rest = steps;
    let mut path = JsonPath::root();
    match shape {
        Shape::ContainerArray => path = path.key("containerDefinitions"),
        Shape::DescribeWrapped => match rest.first() {
            Some(Step::Key(k)) if k == "taskDefinition" => rest = &rest[1..],
            _ => return None,
        },
        _ => {}
    }
    for s in rest {
        path = match s {
            Step::Key(k) => path.key(k),
            Step::Index(i) => path.index(*i),
        };
    }
    Some(Finding::warning(
        "empty-member",
        path,
        "every member of this object is empty (null, \"\" or []), so it is treated as not set, \
         as amazon-ecs-deploy-task-definition does before registering; ECS would receive it \
         as written",
    ))
}

fn type_error(base: &JsonPath, at: &JsonPath, e: &serde_json::Error) -> Finding {
    Finding::error(
        Code::SerializationException,
        "json-type",
        join(base, at),
        humanize_serde(&e.to_string()),
    )
}

/// A member the ECS model does not have: refused, as the AWS CLI refuses it before sending
/// anything ([`Parsed::lenient`] makes these warnings again).
fn unknown_member(path: &JsonPath, message: String) -> Finding {
    Finding::error(
        Code::ParamValidationError,
        "unknown-member",
        path.clone(),
        message,
    )
}

fn join(base: &JsonPath, rel: &JsonPath) -> JsonPath {
    let mut v = base.0.clone();
    v.extend(rel.0.iter().cloned());
    JsonPath(v)
}

fn get_mut<'a>(mut v: &'a mut Value, path: &JsonPath) -> Option<&'a mut Value> {
    for seg in &path.0 {
        v = match (seg, v) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn count_nodes(v: &Value) -> usize {
    // Iterative: a deeply nested document must not overflow the stack here either.
    let mut stack = vec![v];
    let mut n = 0;
    while let Some(v) = stack.pop() {
        n += 1;
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    n
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json appends " at line L column C" to syntax errors; the finding carries those.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Serde's wording, in the vocabulary of JSON rather than Rust.
fn humanize_serde(msg: &str) -> String {
    let mut m = msg
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected a list (JSON array)")
        .replace("expected a map", "expected an object")
        .replace("invalid type: map", "invalid type: object")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: floating point", "invalid type: number");
    if let Some(i) = m.find("expected struct ") {
        m.truncate(i);
        m.push_str("expected an object");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &Parsed) -> Vec<(String, &'static str)> {
        p.findings
            .iter()
            .map(|f| (f.path.to_string(), f.rule))
            .collect()
    }

    #[test]
    fn source_forms() {
        assert_eq!(Source::from_arg("-"), Source::Stdin);
        assert_eq!(
            Source::from_arg("file://a/b.json"),
            Source::File("a/b.json".into())
        );
        assert_eq!(
            Source::from_arg("file:///abs.json"),
            Source::File("/abs.json".into())
        );
        assert_eq!(Source::from_arg("x.json"), Source::File("x.json".into()));
        assert_eq!(
            Source::from_arg("dir/my web.taskdef.json")
                .default_family()
                .unwrap(),
            "my-web-taskdef"
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let p = parse_str("{\n  \"family\": \"a\",\n  \"cpu\": ,\n}");
        assert_eq!(p.shape, Shape::Unreadable);
        let f = &p.findings[0];
        assert_eq!((f.line, f.column), (Some(3), Some(10)));
        assert_eq!(f.code, Code::SerializationException);
        assert!(!f.message.contains(" at line "), "{}", f.message);
    }

    #[test]
    fn shapes_are_detected() {
        assert_eq!(parse_str(r#"{"family":"a"}"#).shape, Shape::RegisterInput);
        assert_eq!(
            parse_str(r#"{"family":"a","revision":3}"#).shape,
            Shape::DescribeOutput
        );
        let w = parse_str(
            r#"{"taskDefinition":{"family":"a"},"tags":[{"key":"k","value":"v"}],
            "ResponseMetadata":{"RequestId":"x"}}"#,
        );
        assert_eq!(w.shape, Shape::DescribeWrapped);
        assert_eq!(w.def.tags.unwrap().len(), 1);
        assert!(w.findings.is_empty(), "{:?}", w.findings);
        let a = parse_str(r#"[{"name":"a","image":"b"}]"#);
        assert_eq!(a.shape, Shape::ContainerArray);
        assert_eq!(a.def.container_definitions.unwrap().len(), 1);
        assert_eq!(parse_str("42").shape, Shape::Unreadable);
        assert_eq!(parse_str("\u{feff}{}").shape, Shape::RegisterInput);
    }

    #[test]
    fn unknown_members_are_errors_with_paths() {
        let p = parse_str(
            r#"{"family":"a","foo":1,"containerDefinitions":[{"name":"x","bar":{"baz":2}}],
                "Volumes":[{"name":"v"}]}"#,
        );
        let r = rules(&p);
        assert!(r.contains(&("foo".into(), "unknown-member")));
        assert!(r.contains(&("containerDefinitions[0].bar".into(), "unknown-member")));
        assert!(p.findings.iter().all(|f| f.is_error()));
        let mut lenient = p.clone();
        lenient.lenient();
        assert!(lenient.findings.iter().all(|f| !f.is_error()));
        let vol = p
            .findings
            .iter()
            .find(|f| f.path.to_string() == "Volumes")
            .unwrap();
        assert!(
            vol.message.contains("Did you mean \"volumes\"?"),
            "{}",
            vol.message
        );
    }

    #[test]
    fn describe_output_members_are_accepted_with_a_note() {
        let p = parse_str(
            r#"{"taskDefinition":{"taskDefinitionArn":"arn:aws:ecs:us-east-1:1:task-definition/a:3",
                "revision":3,"status":"ACTIVE","family":"a","containerDefinitions":[]}}"#,
        );
        assert!(p.findings.iter().all(|f| !f.is_error()), "{:?}", p.findings);
        let note: Vec<_> = p
            .findings
            .iter()
            .filter(|f| f.rule == "describe-output-member")
            .collect();
        assert_eq!(note.len(), 1);
        assert!(
            note[0]
                .message
                .starts_with("taskDefinitionArn, revision, status are members of a describe"),
            "{}",
            note[0].message
        );
        let r = parse_str(r#"{"family":"a","containerDefinitions":[]}"#);
        assert!(r.findings.is_empty());
    }

    #[test]
    fn all_type_errors_are_reported() {
        let p = parse_str(
            r#"{"family":"a","containerDefinitions":[
                {"name":"x","memory":"lots","essential":"yes","command":["a",1],
                 "portMappings":[{"containerPort":"eighty"}]},
                "not-an-object"],
                "networkMode":"awsvpcc"}"#,
        );
        let errors: Vec<String> = p
            .findings
            .iter()
            .filter(|f| f.is_error())
            .map(|f| f.path.to_string())
            .collect();
        for want in [
            "containerDefinitions[0].memory",
            "containerDefinitions[0].essential",
            "containerDefinitions[0].command[1]",
            "containerDefinitions[0].portMappings[0].containerPort",
            "containerDefinitions[1]",
            "networkMode",
        ] {
            assert!(
                errors.iter().any(|e| e == want),
                "missing {want} in {errors:?}"
            );
        }
        let mem = p
            .findings
            .iter()
            .find(|f| f.path.to_string().ends_with("].memory"))
            .unwrap();
        assert!(
            mem.message.contains("expected an integer"),
            "{}",
            mem.message
        );
        // The list that held a bad element is dropped as a whole.
        assert!(
            p.dropped
                .iter()
                .any(|d| d.to_string() == "containerDefinitions[0].command")
        );
    }

    #[test]
    fn placeholders_are_warnings() {
        let p = parse_str(
            r#"{"family":"a","containerDefinitions":[{"name":"x","memory":"${memory}",
                "portMappings":[{"containerPort":"{{ .Port }}"}],"cpu":"lots"}]}"#,
        );
        let got: Vec<(String, &str)> = p
            .findings
            .iter()
            .map(|f| (f.path.to_string(), f.rule))
            .collect();
        assert!(got.contains(&(
            "containerDefinitions[0].memory".into(),
            "template-placeholder"
        )));
        assert!(got.contains(&(
            "containerDefinitions[0].portMappings[0].containerPort".into(),
            "template-placeholder"
        )));
        assert!(got.contains(&("containerDefinitions[0].cpu".into(), "json-type")));
        assert!(
            is_placeholder("<IMAGE1_NAME>") && !is_placeholder("nginx") && !is_placeholder("<")
        );
    }

    #[test]
    fn empty_members_are_absent() {
        let p = parse_str(
            r#"{"family":"a","taskRoleArn":"","containerDefinitions":[{"name":"x","links":[],
                "repositoryCredentials":{"credentialsParameter":""},"environment":[{"name":"","value":""}],
                "command":["a",""]}]}"#,
        );
        let c = &p.def.container_definitions.as_ref().unwrap()[0];
        assert!(p.def.task_role_arn.is_none());
        assert!(c.repository_credentials.is_none() && c.links.is_none() && c.environment.is_none());
        // List elements stay, so paths stay those of the file.
        assert_eq!(c.command.as_deref().unwrap(), ["a", ""]);
        // An object whose members were all empty is said: it changes what the file asks for.
        let said: Vec<String> = p
            .findings
            .iter()
            .filter(|f| f.rule == "empty-member")
            .map(|f| f.path.to_string())
            .collect();
        assert_eq!(said, ["containerDefinitions[0].repositoryCredentials"]);
        // At its path in the task definition, whatever wraps it.
        for (doc, path) in [
            (
                r#"[{"name":"x","healthCheck":{"command":[]}}]"#,
                "containerDefinitions[0].healthCheck",
            ),
            (
                r#"{"taskDefinition":{"family":"f","containerDefinitions":[{"name":"x","healthCheck":{"command":[],"interval":null}}]}}"#,
                "containerDefinitions[0].healthCheck",
            ),
        ] {
            let p = parse_str(doc);
            assert!(
                p.def.container_definitions.as_ref().unwrap()[0]
                    .health_check
                    .is_none()
            );
            let f = p
                .findings
                .iter()
                .find(|f| f.rule == "empty-member")
                .unwrap();
            assert_eq!(f.path.to_string(), path);
        }
    }

    #[test]
    fn unambiguous_scalars_are_coerced_with_a_warning() {
        let p = parse_str(
            r#"{"family":"a","containerDefinitions":[{"name":"x","memory":512.0,"essential":"true",
                "portMappings":[{"containerPort":"3000"}]}]}"#,
        );
        let c = &p.def.container_definitions.as_ref().unwrap()[0];
        assert_eq!(c.memory, Some(512));
        assert_eq!(c.essential, Some(true));
        assert_eq!(
            c.port_mappings.as_ref().unwrap()[0].container_port,
            Some(3000)
        );
        assert!(
            p.findings
                .iter()
                .all(|f| !f.is_error() && f.rule == "coerced-value"),
            "{:?}",
            p.findings
        );
        assert_eq!(p.findings.len(), 3);
        assert!(p.dropped.is_empty());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        let p = parse_str(&deep);
        assert_eq!(p.shape, Shape::Unreadable);
    }
}
