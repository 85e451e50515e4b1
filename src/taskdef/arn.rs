//! Region, account and ARNs as minifargate prints them, and references to task definitions
//! (`family`, `family:3`, an ARN, or `file://taskdef.json`).
//!
//! There is no AWS account behind minifargate: ARNs use `AWS_REGION` (or `AWS_DEFAULT_REGION`,
//! default `us-east-1`) and `MINIFARGATE_ACCOUNT_ID` (default `000000000000`), so that tools
//! which parse ARNs keep working.

use super::parse::Source;
use std::fmt;

pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

/// The binary's configuration builds it (`AwsContext::from_env`, src/config.rs): this
/// module reads no environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsContext {
    pub region: String,
    pub account_id: String,
}

impl AwsContext {
    /// The defaults (`us-east-1`, `000000000000`) whatever the environment says: for tests
    /// that compare ARNs.
    #[cfg(test)]
    pub fn defaults() -> AwsContext {
        AwsContext {
            region: DEFAULT_REGION.to_string(),
            account_id: DEFAULT_ACCOUNT_ID.to_string(),
        }
    }

    /// `arn:aws:ecs:<region>:<account>:<resource>`.
    pub fn ecs_arn(&self, resource: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{resource}", self.region, self.account_id)
    }

    pub fn task_definition_arn(&self, family: &str, revision: u32) -> String {
        self.ecs_arn(&format!("task-definition/{family}:{revision}"))
    }

    /// What ECS puts in `registeredBy`: the caller's principal; here the account root.
    pub fn principal(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account_id)
    }
}

/// How a command names a task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDefRef {
    /// `web`: the latest ACTIVE revision.
    Latest(String),
    /// `web:3` or `arn:aws:ecs:…:task-definition/web:3`.
    Revision(String, u32),
    /// `file://taskdef.json`: registered first (run-task).
    File(Source),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid task definition reference {0:?}: use FAMILY, FAMILY:REVISION, a task definition ARN or file://PATH"
)]
pub struct BadRef(pub String);

impl TaskDefRef {
    pub fn parse(s: &str) -> Result<TaskDefRef, BadRef> {
        let bad = || BadRef(s.to_string());
        if s.starts_with("file://") {
            return Ok(TaskDefRef::File(Source::from_arg(s)));
        }
        let tail = if s.starts_with("arn:") {
            // arn:PARTITION:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION
            let resource = s.splitn(6, ':').nth(5).ok_or_else(bad)?;
            resource.strip_prefix("task-definition/").ok_or_else(bad)?
        } else {
            s
        };
        let (family, revision) = match tail.rsplit_once(':') {
            Some((f, r)) => (
                f,
                Some(r.parse::<u32>().ok().filter(|r| *r > 0).ok_or_else(bad)?),
            ),
            None => (tail, None),
        };
        let family_ok = !family.is_empty()
            && family.len() <= 255
            && family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !family_ok {
            return Err(bad());
        }
        Ok(match revision {
            Some(r) => TaskDefRef::Revision(family.to_string(), r),
            None => TaskDefRef::Latest(family.to_string()),
        })
    }
}

impl fmt::Display for TaskDefRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskDefRef::Latest(fam) => f.write_str(fam),
            TaskDefRef::Revision(fam, r) => write!(f, "{fam}:{r}"),
            TaskDefRef::File(src) => write!(f, "file://{}", src.display_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        let ctx = AwsContext {
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
        };
        assert_eq!(
            ctx.task_definition_arn("web", 3),
            "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:3"
        );
        assert_eq!(ctx.principal(), "arn:aws:iam::123456789012:root");
    }

    #[test]
    fn references() {
        assert_eq!(
            TaskDefRef::parse("web"),
            Ok(TaskDefRef::Latest("web".into()))
        );
        assert_eq!(
            TaskDefRef::parse("web:3"),
            Ok(TaskDefRef::Revision("web".into(), 3))
        );
        assert_eq!(
            TaskDefRef::parse("arn:aws:ecs:us-east-1:000000000000:task-definition/web_x:12"),
            Ok(TaskDefRef::Revision("web_x".into(), 12))
        );
        assert_eq!(
            TaskDefRef::parse("file://t.json"),
            Ok(TaskDefRef::File(Source::File("t.json".into())))
        );
        for bad in [
            "",
            "web:0",
            "web:x",
            "web:",
            "a b",
            "arn:aws:ecs:r:a:service/x",
            ":3",
        ] {
            assert!(TaskDefRef::parse(bad).is_err(), "{bad}");
        }
    }
}
