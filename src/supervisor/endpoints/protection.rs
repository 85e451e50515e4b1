//! Task scale-in protection: the rules UpdateTaskProtection and GetTaskProtection apply,
//! shared by the ECS core (`ecs::task_protection`) and the in-task agent endpoint
//! (`$ECS_AGENT_URI/task-protection/v1/state`, `crate::supervisor::endpoints::metadata`). The service scheduler
//! skips a protected task when it scales in or rolls a deployment (`crate::scheduler`).
//!
//! Ref: ecs.json `UpdateTaskProtectionRequest` (expiresInMinutes 1-2,880, default 120; the
//! protection resets to false when it lapses), AWS CLI `update-task-protection` ("only
//! supported for tasks belonging to an Amazon ECS service … a standalone task will result
//! in an TASK_NOT_VALID failure").

use crate::store::{DesiredStatus, LastStatus, Store, StoreError, TaskRow};
use crate::taskdef::timestamp::Timestamp;
use serde::Serialize;

/// The protection a request without `expiresInMinutes` gets.
pub const DEFAULT_MINUTES: i64 = 120;
/// The longest protection (48 hours).
pub const MAX_MINUTES: i64 = 2880;

/// ecs.json `ProtectedTask`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedTask {
    pub task_arn: String,
    pub protection_enabled: bool,
    /// When the protection lapses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<Timestamp>,
}

/// ecs.json `Failure` of a protection request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub arn: String,
    pub reason: String,
    pub detail: String,
}

/// Why a task cannot be (un)protected. Ref: API failure reasons
/// (docs.aws.amazon.com/AmazonECS/latest/developerguide/api_failures_messages.html) and
/// amazon-ecs-agent `agent/handlers/agentapi/taskprotection/v1/handlers/handlers.go`
/// (MISSING, TASK_NOT_VALID for a task outside a service, TASK_STOPPING_OR_STOPPED).
pub mod reason {
    pub const MISSING: &str = "MISSING";
    pub const NOT_VALID: &str = "TASK_NOT_VALID";
    pub const STOPPED: &str = "TASK_STOPPING_OR_STOPPED";
}

/// An `expiresInMinutes` out of ECS's bounds (the InvalidParameterException's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expiresInMinutes {minutes}: must be between 1 and {MAX_MINUTES} minutes (48 hours)")]
pub struct ExpiresInMinutesError {
    pub minutes: i64,
}

/// `expiresInMinutes` checked: the protection's length in minutes when enabling.
pub fn minutes(
    enabled: bool,
    expires_in: Option<i64>,
) -> Result<Option<i64>, ExpiresInMinutesError> {
    if !enabled {
        return Ok(None);
    }
    match expires_in {
        None => Ok(Some(DEFAULT_MINUTES)),
        Some(m @ 1..=MAX_MINUTES) => Ok(Some(m)),
        Some(m) => Err(ExpiresInMinutesError { minutes: m }),
    }
}

/// The protection of `t` at `now_ms` (an expired one is off).
pub fn state(t: &TaskRow, now_ms: i64) -> ProtectedTask {
    let on = t.protected_at(now_ms);
    ProtectedTask {
        task_arn: t.arn.clone(),
        protection_enabled: on,
        expiration_date: t.protected_until.filter(|_| on).map(Timestamp::from_ms),
    }
}

/// Whether `t` can be (un)protected: a service's task that is not stopping.
pub fn eligible(t: &TaskRow) -> Result<(), Failure> {
    let fail = |reason: &str, detail: String| Failure {
        arn: t.arn.clone(),
        reason: reason.into(),
        detail,
    };
    if !t
        .group
        .as_deref()
        .is_some_and(|g| g.starts_with("service:"))
    {
        return Err(fail(
            reason::NOT_VALID,
            "The task is not part of a service: only a service's tasks can be protected".into(),
        ));
    }
    if t.last_status == LastStatus::Stopped || t.desired_status == DesiredStatus::Stopped {
        return Err(fail(
            reason::STOPPED,
            "The task is stopping or stopped".into(),
        ));
    }
    Ok(())
}

/// Sets task `t`'s protection (`minutes` from [`minutes`]) at `now_ms`.
pub fn update(
    store: &mut Store,
    t: &TaskRow,
    minutes: Option<i64>,
    now_ms: i64,
) -> Result<Result<ProtectedTask, Failure>, StoreError> {
    if let Err(f) = eligible(t) {
        return Ok(Err(f));
    }
    let until = minutes.map(|m| now_ms + m * 60_000);
    store.set_task_protection(&t.id, until)?;
    let mut t = t.clone();
    t.protected_until = until;
    Ok(Ok(state(&t, now_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_default_and_bounds() {
        assert_eq!(minutes(true, None), Ok(Some(120)));
        assert_eq!(minutes(true, Some(1)), Ok(Some(1)));
        assert_eq!(minutes(true, Some(2880)), Ok(Some(2880)));
        assert_eq!(
            minutes(true, Some(0)).unwrap_err().to_string(),
            "expiresInMinutes 0: must be between 1 and 2880 minutes (48 hours)"
        );
        assert!(minutes(true, Some(2881)).is_err());
        // Unprotecting ignores the length.
        assert_eq!(minutes(false, Some(9999)), Ok(None));
    }

    #[test]
    fn only_a_services_running_task_is_eligible_and_protection_lapses() {
        let mut t = TaskRow {
            arn: "arn:t".into(),
            group: Some("family:web".into()),
            last_status: LastStatus::Running,
            desired_status: DesiredStatus::Running,
            ..Default::default()
        };
        assert_eq!(eligible(&t).unwrap_err().reason, "TASK_NOT_VALID");
        t.group = Some("service:web".into());
        assert!(eligible(&t).is_ok());
        t.desired_status = DesiredStatus::Stopped;
        assert_eq!(eligible(&t).unwrap_err().reason, "TASK_STOPPING_OR_STOPPED");
        t.protected_until = Some(1000);
        assert!(state(&t, 999).protection_enabled);
        let off = state(&t, 1000);
        assert!(!off.protection_enabled && off.expiration_date.is_none());
    }
}
