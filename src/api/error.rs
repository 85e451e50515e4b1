//! ECS errors as the JSON 1.1 protocol carries them: `{"__type": "<Name>", "message": …}`
//! with an HTTP status. [`EcsError`] is what the shared verb functions return for a
//! failure ECS has a name for; the CLI prints it as `<Name>: <message>`.

use crate::taskdef::{RegisterError, ResolveError, arn::BadRef};

/// An ECS exception: its name (`ClientException`, `ClusterNotFoundException`, …) and
/// message.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct EcsError {
    pub kind: &'static str,
    pub message: String,
}

impl EcsError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> EcsError {
        EcsError {
            kind,
            message: message.into(),
        }
    }
    pub fn client(message: impl Into<String>) -> EcsError {
        EcsError::new("ClientException", message)
    }
    pub fn invalid(message: impl Into<String>) -> EcsError {
        EcsError::new("InvalidParameterException", message)
    }
}

/// The HTTP status ECS answers an exception with: 500 for ServerException, 400 for every
/// client-side one. Ref: ecs.json (every error shape but ServerException is `client`).
pub fn status_of(kind: &str) -> u16 {
    match kind {
        "ServerException" => 500,
        _ => 400,
    }
}

/// The ECS exception for an error out of a verb function: a typed [`EcsError`] anywhere in
/// the chain, a task definition that failed to resolve or register (ClientException), else
/// ServerException with the whole chain as message.
pub fn classify(err: &anyhow::Error) -> EcsError {
    let text = crate::cli::render_error(err);
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<EcsError>() {
            return EcsError::new(e.kind, e.message.clone());
        }
        if cause.downcast_ref::<BadRef>().is_some() {
            return EcsError::invalid(text);
        }
        if let Some(e) = cause.downcast_ref::<ResolveError>() {
            let kind = match e {
                ResolveError::BadRef(_) => "InvalidParameterException",
                ResolveError::Store { .. } => "ServerException",
                _ => "ClientException",
            };
            let message = match e {
                ResolveError::NotFound(_) | ResolveError::Inactive(_) => e
                    .to_string()
                    .trim_start_matches("ClientException: ")
                    .to_string(),
                _ => text,
            };
            return EcsError::new(kind, message);
        }
        if let Some(e) = cause.downcast_ref::<RegisterError>() {
            return match e {
                RegisterError::Store { .. } => EcsError::new("ServerException", text),
                RegisterError::Invalid { name, report } => {
                    EcsError::client(crate::cli::taskdefs::invalid_message(name, report))
                }
                RegisterError::Read(_) => EcsError::client(text),
            };
        }
    }
    EcsError::new("ServerException", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_keep_their_name_through_context() {
        let e = anyhow::Error::from(EcsError::new(
            "ClusterNotFoundException",
            "Cluster not found.",
        ))
        .context("failed to run the task");
        let c = classify(&e);
        assert_eq!(
            (c.kind, c.message.as_str()),
            ("ClusterNotFoundException", "Cluster not found.")
        );
        assert_eq!(status_of(c.kind), 400);
        let e = anyhow::Error::from(ResolveError::NotFound("web:3".into()))
            .context("failed to resolve task definition web:3");
        let c = classify(&e);
        assert_eq!(c.kind, "ClientException");
        assert!(
            c.message
                .starts_with("Unable to describe task definition web:3"),
            "{}",
            c.message
        );
        let c = classify(&anyhow::anyhow!("disk full"));
        assert_eq!((c.kind, status_of(c.kind)), ("ServerException", 500));
        assert_eq!(
            EcsError::invalid("bad").to_string(),
            "InvalidParameterException: bad"
        );
    }
}
