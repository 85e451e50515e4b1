//! The ECS exceptions an operation of the core fails with: one variant per exception name
//! ECS defines (ecs.json's error shapes), so every front-end reports the same failure the
//! same way — the API as `{"__type": "<Name>", "message": …}` with ECS's HTTP status, the
//! CLI as `<Name>: <message>`.

use super::task_definition_errors::{RegisterError, ResolveError};
use crate::taskdef::{Finding, arn::BadRef};

/// An ECS exception. The message of each named exception is what ECS users see; a
/// `ServerException` keeps the whole cause chain of the failure inside this host.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    #[error("ClientException: {0}")]
    Client(String),
    #[error("InvalidParameterException: {0}")]
    InvalidParameter(String),
    /// A ClientException for a task definition that breaks ECS's rules, with every
    /// finding of its validation (errors first), so a front-end can show them all.
    #[error("ClientException: {message}")]
    InvalidTaskDefinition {
        message: String,
        findings: Vec<Finding>,
    },
    #[error("ClusterNotFoundException: {0}")]
    ClusterNotFound(String),
    #[error("ClusterContainsTasksException: {0}")]
    ClusterContainsTasks(String),
    #[error("ServiceNotFoundException: {0}")]
    ServiceNotFound(String),
    #[error("ServiceNotActiveException: {0}")]
    ServiceNotActive(String),
    /// A Cloud Map namespace the request names does not exist.
    #[error("NamespaceNotFoundException: {0}")]
    NamespaceNotFound(String),
    /// A RunTask clientToken reused with other parameters.
    #[error("ConflictException: {0}")]
    Conflict(String),

    /// StopServiceDeployment naming a service deployment that does not exist.
    #[error("ServiceDeploymentNotFoundException: {0}")]
    ServiceDeploymentNotFound(String),

    /// PutAttributes/DeleteAttributes naming a resource that does not exist.
    #[error("TargetNotFoundException: {0}")]
    TargetNotFound(String),
    /// More than 10 custom attributes on one resource. Ref: ecs.json
    /// `AttributeLimitExceededException`.
    #[error("AttributeLimitExceededException: {0}")]
    AttributeLimitExceeded(String),

    /// The request body does not decode as the operation's input shape.
    #[error("SerializationException: {0}")]
    Serialization(String),
    #[error("UnknownOperationException: {0}")]
    UnknownOperation(String),
    /// A failure of this host (store, supervisor, kernel), not of the request.
    #[error(transparent)]
    Server(anyhow::Error),
}

/// The core's result type.
pub type EcsResult<T> = Result<T, EcsError>;

impl EcsError {
    pub fn client(message: impl Into<String>) -> EcsError {
        EcsError::Client(message.into())
    }
    pub fn invalid(message: impl Into<String>) -> EcsError {
        EcsError::InvalidParameter(message.into())
    }

    /// The exception's name, as ECS spells it in `__type` and `x-amzn-errortype`.
    pub fn name(&self) -> &'static str {
        match self {
            EcsError::Client(_) | EcsError::InvalidTaskDefinition { .. } => "ClientException",
            EcsError::InvalidParameter(_) => "InvalidParameterException",
            EcsError::ClusterNotFound(_) => "ClusterNotFoundException",
            EcsError::ClusterContainsTasks(_) => "ClusterContainsTasksException",
            EcsError::ServiceNotFound(_) => "ServiceNotFoundException",
            EcsError::ServiceNotActive(_) => "ServiceNotActiveException",
            EcsError::Conflict(_) => "ConflictException",
            EcsError::ServiceDeploymentNotFound(_) => "ServiceDeploymentNotFoundException",
            EcsError::NamespaceNotFound(_) => "NamespaceNotFoundException",
            EcsError::TargetNotFound(_) => "TargetNotFoundException",
            EcsError::AttributeLimitExceeded(_) => "AttributeLimitExceededException",
            EcsError::Serialization(_) => "SerializationException",
            EcsError::UnknownOperation(_) => "UnknownOperationException",
            EcsError::Server(_) => "ServerException",
        }
    }

    /// The exception's message: for a ServerException, its cause chain on one line; for a
    /// refused task definition, every error finding after the summary (one per line), so an
    /// API caller learns as much as `validate` says.
    pub fn message(&self) -> String {
        match self {
            EcsError::InvalidTaskDefinition { message, findings } => {
                let mut m = message.clone();
                for f in findings.iter().filter(|f| f.is_error()) {
                    m.push('\n');
                    m.push_str(&f.to_string());
                }
                m
            }
            EcsError::Client(m)
            | EcsError::InvalidParameter(m)
            | EcsError::ClusterNotFound(m)
            | EcsError::ClusterContainsTasks(m)
            | EcsError::ServiceNotFound(m)
            | EcsError::ServiceNotActive(m)
            | EcsError::Conflict(m)
            | EcsError::ServiceDeploymentNotFound(m)
            | EcsError::NamespaceNotFound(m)
            | EcsError::TargetNotFound(m)
            | EcsError::AttributeLimitExceeded(m)
            | EcsError::Serialization(m)
            | EcsError::UnknownOperation(m) => m.clone(),
            EcsError::Server(e) => crate::errors::error_chain(e.as_ref()),
        }
    }

    /// The HTTP status ECS answers the exception with: 500 for ServerException, 400 for
    /// every client-side one. Ref: ecs.json (every error shape but ServerException is
    /// `client`).
    pub fn status(&self) -> u16 {
        match self {
            EcsError::Server(_) => 500,
            _ => 400,
        }
    }
}

/// The ECS exception of a failure inside the core: a typed [`EcsError`] anywhere in the
/// chain, a task definition that failed to resolve or register (ClientException), else
/// ServerException with the whole chain.
impl From<anyhow::Error> for EcsError {
    fn from(err: anyhow::Error) -> EcsError {
        let mut named = None;
        for cause in err.chain() {
            if let Some(e) = cause.downcast_ref::<EcsError>() {
                named = named_copy(e);
                break;
            }
            // A runtimePlatform this host cannot run: refused like a request ECS cannot place.
            // (The launch's errors are transparent: the platform error is matched inside.)
            if let Some(crate::supervisor::launch::LaunchError::Unsupported(
                crate::supervisor::support::SupportError::Platform(e),
            )) = cause.downcast_ref::<crate::supervisor::launch::LaunchError>()
            {
                named = Some(EcsError::client(e.to_string()));
                break;
            }
            if cause.downcast_ref::<BadRef>().is_some() {
                named = Some(EcsError::invalid(crate::errors::error_chain(err.as_ref())));
                break;
            }
            if let Some(e) = cause.downcast_ref::<ResolveError>() {
                named = match e {
                    ResolveError::Store { .. }
                    | ResolveError::Register(RegisterError::Store { .. }) => None,
                    // A file that run-task registers first: every finding, not a count.
                    ResolveError::Register(RegisterError::Invalid { name, report }) => {
                        Some(EcsError::InvalidTaskDefinition {
                            message: invalid_message(name, report),
                            findings: report.findings.clone(),
                        })
                    }
                    ResolveError::BadRef(_) => {
                        Some(EcsError::invalid(crate::errors::error_chain(err.as_ref())))
                    }
                    ResolveError::NotFound(_) | ResolveError::Inactive(_) => {
                        Some(EcsError::client(
                            e.to_string()
                                .trim_start_matches("ClientException: ")
                                .to_string(),
                        ))
                    }
                    _ => Some(EcsError::client(crate::errors::error_chain(err.as_ref()))),
                };
                break;
            }
            if let Some(e) = cause.downcast_ref::<RegisterError>() {
                named = match e {
                    RegisterError::Store { .. } => None,
                    RegisterError::Invalid { name, report } => {
                        Some(EcsError::InvalidTaskDefinition {
                            message: invalid_message(name, report),
                            findings: report.findings.clone(),
                        })
                    }
                    RegisterError::Read(_) => {
                        Some(EcsError::client(crate::errors::error_chain(err.as_ref())))
                    }
                };
                break;
            }
        }
        named.unwrap_or(EcsError::Server(err))
    }
}

/// A named exception found in a cause chain, taken out of it; `None` for a
/// ServerException, which stays in its chain with the context around it.
fn named_copy(e: &EcsError) -> Option<EcsError> {
    Some(match e {
        EcsError::Client(m) => EcsError::Client(m.clone()),
        EcsError::InvalidTaskDefinition { message, findings } => EcsError::InvalidTaskDefinition {
            message: message.clone(),
            findings: findings.clone(),
        },
        EcsError::InvalidParameter(m) => EcsError::InvalidParameter(m.clone()),
        EcsError::ClusterNotFound(m) => EcsError::ClusterNotFound(m.clone()),
        EcsError::ClusterContainsTasks(m) => EcsError::ClusterContainsTasks(m.clone()),
        EcsError::ServiceNotFound(m) => EcsError::ServiceNotFound(m.clone()),
        EcsError::ServiceNotActive(m) => EcsError::ServiceNotActive(m.clone()),
        EcsError::Conflict(m) => EcsError::Conflict(m.clone()),
        EcsError::ServiceDeploymentNotFound(m) => EcsError::ServiceDeploymentNotFound(m.clone()),
        EcsError::NamespaceNotFound(m) => EcsError::NamespaceNotFound(m.clone()),
        EcsError::TargetNotFound(m) => EcsError::TargetNotFound(m.clone()),
        EcsError::AttributeLimitExceeded(m) => EcsError::AttributeLimitExceeded(m.clone()),
        EcsError::Serialization(m) => EcsError::Serialization(m.clone()),
        EcsError::UnknownOperation(m) => EcsError::UnknownOperation(m.clone()),
        EcsError::Server(_) => return None,
    })
}

/// `NAME has N error(s) (CODE: first message)`: why a registration was refused.
pub fn invalid_message(name: &str, report: &crate::taskdef::Report) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_keep_their_name_through_context() {
        let e = anyhow::Error::from(EcsError::ClusterNotFound("Cluster not found.".into()))
            .context("failed to run the task");
        let c = EcsError::from(e);
        assert_eq!(
            (c.name(), c.message().as_str()),
            ("ClusterNotFoundException", "Cluster not found.")
        );
        assert_eq!(c.status(), 400);
        let e = anyhow::Error::from(ResolveError::NotFound("web:3".into()))
            .context("failed to resolve task definition web:3");
        let c = EcsError::from(e);
        assert_eq!(c.name(), "ClientException");
        assert!(
            c.message()
                .starts_with("Unable to describe task definition web:3"),
            "{}",
            c.message()
        );
        let c = EcsError::from(anyhow::anyhow!("disk full").context("failed to write"));
        assert_eq!((c.name(), c.status()), ("ServerException", 500));
        assert_eq!(c.message(), "failed to write: disk full");
        assert_eq!(
            EcsError::invalid("bad").to_string(),
            "InvalidParameterException: bad"
        );
    }
}
