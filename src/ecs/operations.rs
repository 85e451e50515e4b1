//! The operations this host serves, typed: for each row of the one table
//! ([`super::table`]) a marker type implementing [`Operation`] (request and response
//! types, decoding, the call). The API's dispatch, the CLI's verbs, the lists docs render
//! and the member tests all come from those rows; front-ends hand the core typed values.

use super::{
    Ecs, EcsError, EcsResult, account_settings as acct, clusters, container_instances as ci,
    deployments as deps, fleet, services, start_task as st, tags, task_definitions as td,
    task_protection as prot, tasks,
};
use crate::logs::{self, LogsError};
use serde::de::DeserializeOwned;

pub use super::table::{Op, Service, ecs_names};

/// Who calls an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A request over HTTP (`serve`'s API and console): never reads this host's files.
    Api,
    /// This host's own CLI verbs (root on the box): local paths are a convenience.
    LocalCli,
}

/// What every call gets besides its request: the host and who asks.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub ecs: &'a Ecs,
    pub caller: Caller,
}

impl Context<'_> {
    /// The request came over the API: this host's files are never read for it.
    pub fn remote(&self) -> bool {
        self.caller == Caller::Api
    }
}

/// The failure of any operation, with the exception name its service answers.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Ecs(#[from] EcsError),
    #[error(transparent)]
    Logs(#[from] LogsError),
}

impl ServiceError {
    /// The exception's name (`ClusterNotFoundException`).
    pub fn name(&self) -> &'static str {
        match self {
            ServiceError::Ecs(e) => e.name(),
            ServiceError::Logs(e) => e.name(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            ServiceError::Ecs(e) => e.message(),
            ServiceError::Logs(e) => e.message(),
        }
    }

    /// The HTTP status the JSON protocol answers it with.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Ecs(e) => e.status(),
            ServiceError::Logs(e) => e.status(),
        }
    }
}

/// One operation of the table: a marker type per row, made by [`operations!`].
pub trait Operation {
    /// The row's name in [`Op`].
    const OP: Op;
    /// The request shape (the service model's `<Name>Request` members).
    type Request;
    /// The response shape.
    type Response: serde::Serialize;
    /// The service's exception.
    type Error: Into<ServiceError> + std::error::Error + Send + Sync + 'static;
    /// A JSON request body as the request (an empty one is `{}`), refused with the
    /// service's serialization or parameter exception.
    fn decode(body: &[u8]) -> Result<Self::Request, Self::Error>;
    /// Runs the operation.
    fn call(cx: &Context, req: Self::Request) -> Result<Self::Response, Self::Error>;
    /// The request type's top-level members, for the member tests (`None` when the
    /// request is not a plain serde shape, as RegisterTaskDefinition's).
    #[cfg(test)]
    fn request_members() -> Option<Vec<String>>;
}

/// Something done with an operation's types: [`Op::visit`] calls `visit::<O>` with the
/// marker type of the row, so a front-end handles every row with one generic function.
pub trait Visitor {
    type Out;
    fn visit<O: Operation>(self) -> Self::Out;
}

/// A JSON body as ECS request `T` (an empty body is `{}`), refusing members `T` does not
/// have with the AWS CLI's words (it refuses them before sending; a hand-made request gets
/// the same answer instead of a silent drop). Every member of ECS's model is a member of
/// `T` (the test `every_ecs_member_is_taken`), so nothing ECS defines is dropped.
pub fn ecs_json<T: DeserializeOwned>(body: &[u8]) -> EcsResult<T> {
    use crate::taskdef::unknown::{DecodeError, decode};
    let text = std::str::from_utf8(body)
        .map_err(|_| EcsError::Serialization("the body is not UTF-8".into()))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    decode(text, &crate::taskdef::finding::JsonPath::root()).map_err(|e| match e {
        DecodeError::Malformed(m) => EcsError::Serialization(format!("invalid request body: {m}")),
        DecodeError::Unknown(_) => EcsError::invalid(e.to_string()),
    })
}

/// A JSON body as CloudWatch Logs request `T` (an empty body is `{}`); the request types
/// name the members CloudWatch has and this host refuses (`crate::logs`).
pub fn logs_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, LogsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        LogsError::Serialization(format!("invalid request body: {}: {}", e.path(), e.inner()))
    })
}

/// RegisterTaskDefinition's body: the task definition model's own parser, whose findings
/// (unknown members, type errors) are the validation's.
fn task_definition(body: &[u8]) -> EcsResult<crate::taskdef::Parsed> {
    let text = std::str::from_utf8(body)
        .map_err(|_| EcsError::Serialization("the body is not UTF-8".into()))?;
    Ok(crate::taskdef::parse::parse_str(text))
}

fn register(cx: &Context, parsed: crate::taskdef::Parsed) -> EcsResult<td::TaskDefinitionResponse> {
    let origin = td::Origin {
        name: "the request",
        remote: cx.remote(),
        ..Default::default()
    };
    let r = td::register_task_definition(cx.ecs, parsed, origin)?;
    for w in &r.warnings {
        tracing::warn!(finding = %w, "{}", Op::RegisterTaskDefinition.name());
    }
    Ok(r.response)
}

/// What a RunTask or StartTask request brings here: nothing local; over the API, the
/// definition's local paths refused.
fn local(cx: &Context) -> tasks::Local {
    tasks::Local {
        remote: cx.remote(),
        ..Default::default()
    }
}

/// The answer of RunTask and StartTask for a caller that does not follow its tasks; the
/// supervisors are reaped when they exit (they run detached, in their own sessions).
fn detached(op: Op, started: tasks::Started) -> tasks::RunTaskResponse {
    for w in &started.warnings {
        tracing::warn!(warning = %w.message, "{}", op.name());
    }
    for mut sup in started.supervisors {
        std::thread::spawn(move || sup.child.wait());
    }
    started.response
}

macro_rules! error_of {
    (Ecs) => {
        EcsError
    };
    (Logs) => {
        LogsError
    };
}

macro_rules! decoder_of {
    (Ecs) => {
        ecs_json
    };
    (Logs) => {
        logs_json
    };
    ($svc:ident, $dec:path) => {
        $dec
    };
}

#[cfg(test)]
macro_rules! members_of {
    ($req:ty) => {
        Some(crate::taskdef::members::paths::<$req>())
    };
    ($req:ty, $dec:path) => {
        None
    };
}

/// The typed half of each row of [`super::table`]: its marker type implementing
/// [`Operation`], and [`Op::visit`].
macro_rules! typed {
    ($(
        $name:ident($svc:ident): $req:ty => $resp:ty,
        $(decode $dec:path;)?
        call $call:expr,
        $notes:literal;
    )*) => {
        impl Op {
            /// Runs `v` with the row's marker type.
            pub fn visit<V: Visitor>(self, v: V) -> V::Out {
                match self { $(Op::$name => v.visit::<$name>()),* }
            }
        }

        $(
            #[doc = concat!("The `", stringify!($name), "` row of [`Op`].")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl Operation for $name {
                const OP: Op = Op::$name;
                type Request = $req;
                type Response = $resp;
                type Error = error_of!($svc);
                fn decode(body: &[u8]) -> Result<$req, Self::Error> {
                    decoder_of!($svc $(, $dec)?)(body)
                }
                fn call(cx: &Context, req: $req) -> Result<$resp, Self::Error> {
                    let f: fn(&Context, $req) -> Result<$resp, Self::Error> = $call;
                    f(cx, req)
                }
                #[cfg(test)]
                fn request_members() -> Option<Vec<String>> {
                    members_of!($req $(, $dec)?)
                }
            }
        )*
    };
}

super::table::rows!(typed);

#[cfg(test)]
mod tests {
    use super::super::table::ecs_markdown;
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_found_by_name() {
        let names: BTreeSet<(Service, &str)> =
            Op::ALL.iter().map(|o| (o.service(), o.name())).collect();
        assert_eq!(names.len(), Op::ALL.len(), "an operation declared twice");
        for o in Op::ALL {
            assert_eq!(Op::named(o.service(), o.name()), Some(*o));
            struct Row;
            impl Visitor for Row {
                type Out = Op;
                fn visit<O: Operation>(self) -> Op {
                    O::OP
                }
            }
            assert_eq!(o.visit(Row), *o, "{o:?}: its marker type is another row's");
        }
        assert_eq!(Op::named(Service::Logs, "RunTask"), None);
        assert_eq!(Op::named(Service::Ecs, "runTask"), None);
    }

    #[test]
    fn every_listed_operation_is_dispatchable() {
        // What the docs list (ecs_names, ecs_markdown) is the table, and each row decodes
        // `{}` and calls its core function: none answers UnknownOperation.
        let dir = tempfile::tempdir().unwrap();
        let ecs = Ecs::scratch(dir.path());
        struct Call<'a>(Context<'a>);
        impl Visitor for Call<'_> {
            type Out = Option<ServiceError>;
            fn visit<O: Operation>(self) -> Option<ServiceError> {
                O::decode(b"{}")
                    .and_then(|r| O::call(&self.0, r))
                    .err()
                    .map(Into::into)
            }
        }
        for name in ecs_names().split(", ") {
            let op = Op::named(Service::Ecs, name)
                .unwrap_or_else(|| panic!("{name}: listed, not in the table"));
            let cx = Context {
                ecs: &ecs,
                caller: Caller::Api,
            };
            if let Some(e) = op.visit(Call(cx)) {
                assert_ne!(e.name(), "UnknownOperationException", "{name}: {e}");
            }
        }
        assert_eq!(
            ecs_markdown().lines().count(),
            Op::of(Service::Ecs).count() + 2
        );
    }
}
