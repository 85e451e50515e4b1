//! What validation reports: findings (error or warning) that carry the ECS exception name,
//! a stable rule id, the JSON path of the member at fault and a message.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The exception ECS would answer with.
///
/// `ClientException` is what RegisterTaskDefinition returns for a definition it refuses,
/// Fargate rules included when `requiresCompatibilities` names FARGATE.
/// `PlatformTaskDefinitionIncompatibilityException` is what RunTask returns when the launch
/// type (here `--launch-type FARGATE`) does not fit a definition that did not ask for it.
/// `SerializationException` is a body ECS cannot read at all: bad JSON or a member of the
/// wrong JSON type. Ref: ecs.json `RegisterTaskDefinition.errors`, `RunTask.errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    ClientException,
    PlatformTaskDefinitionIncompatibilityException,
    SerializationException,
    /// What the AWS CLI and boto3 raise before they send anything: a member the ECS model
    /// does not have (botocore's `ParamValidationError`).
    ParamValidationError,
    /// Warnings that ECS itself would not raise (likely mistakes, local differences).
    Lint,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ClientException => "ClientException",
            Code::PlatformTaskDefinitionIncompatibilityException => {
                "PlatformTaskDefinitionIncompatibilityException"
            }
            Code::SerializationException => "SerializationException",
            Code::ParamValidationError => "ParamValidationError",
            Code::Lint => "Lint",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A JSON path in register-input coordinates: `containerDefinitions[1].portMappings[0].hostPort`.
/// Paths are relative to the task definition object, whatever shape the file had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(pub Vec<Seg>);

impl JsonPath {
    pub fn root() -> JsonPath {
        JsonPath(Vec::new())
    }

    pub fn key(&self, k: &str) -> JsonPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        JsonPath(v)
    }

    pub fn index(&self, i: usize) -> JsonPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        JsonPath(v)
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &JsonPath) -> bool {
        self.0.len() >= prefix.0.len() && self.0[..prefix.0.len()] == prefix.0[..]
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

fn is_identifier(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if is_identifier(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for JsonPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: Code,
    /// Stable identifier of the rule, e.g. `awsvpc-host-port`.
    pub rule: &'static str,
    pub path: JsonPath,
    pub message: String,
    /// 1-based line and column, for JSON syntax errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Finding {
    pub fn error(
        code: Code,
        rule: &'static str,
        path: JsonPath,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Error,
            code,
            rule,
            path,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    pub fn warning(rule: &'static str, path: JsonPath, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            code: Code::Lint,
            rule,
            path,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    /// `error: containerDefinitions[0].image: ClientException: Container.image should not be
    /// null or empty. [image-required]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: ")?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "line {l}, column {c}: ")?;
        } else if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        if self.code != Code::Lint {
            write!(f, "{}: ", self.code)?;
        }
        write!(f, "{} [{}]", self.message, self.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_display() {
        let p = JsonPath::root()
            .key("containerDefinitions")
            .index(1)
            .key("portMappings")
            .index(0)
            .key("hostPort");
        assert_eq!(
            p.to_string(),
            "containerDefinitions[1].portMappings[0].hostPort"
        );
        let q = JsonPath::root()
            .key("containerDefinitions")
            .index(0)
            .key("dockerLabels")
            .key("a.b");
        assert_eq!(
            q.to_string(),
            r#"containerDefinitions[0].dockerLabels["a.b"]"#
        );
        assert!(p.starts_with(&JsonPath::root().key("containerDefinitions").index(1)));
        assert!(!p.starts_with(&JsonPath::root().key("containerDefinitions").index(0)));
        assert_eq!(JsonPath::root().to_string(), "(root)");
    }

    #[test]
    fn finding_display() {
        let f = Finding::error(
            Code::ClientException,
            "image-required",
            JsonPath::root()
                .key("containerDefinitions")
                .index(0)
                .key("image"),
            "Container.image should not be null or empty.",
        );
        assert_eq!(
            f.to_string(),
            "error: containerDefinitions[0].image: ClientException: Container.image should not \
             be null or empty. [image-required]"
        );
    }
}
