//! Why registering or resolving a task definition failed: shared by the resource file that
//! does it (`task_definitions`) and by `error`, which names the ECS exception each one is, so
//! neither imports the other in a circle.

use crate::store::StoreError;
use crate::taskdef;

/// Why RegisterTaskDefinition (or a run-task of a file, which registers it first) failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Read(#[from] taskdef::ReadError),
    #[error("task definition {name} is invalid: {} error(s)", report.errors)]
    Invalid {
        name: String,
        report: Box<taskdef::Report>,
    },
    #[error("failed to register task definition family {family}")]
    Store {
        family: String,
        #[source]
        source: StoreError,
    },
}

/// Why a task definition reference (`family`, `family:rev`, an ARN, a file) did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    BadRef(#[from] taskdef::arn::BadRef),
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
