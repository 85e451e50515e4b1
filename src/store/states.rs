//! The ECS states the store keeps (task, container, service, deployment, cluster), typed
//! with their ECS spellings: the store decodes them where rows are read and the rest of
//! minifargate compares enums, never strings. Where an enum has a `Default`, it is the
//! state a new task, service, deployment or cluster starts in.

/// A stored or given state that is not one of its enum's ECS spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {kind}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

/// A [`wire_enum`](crate::taskdef::model::wire_enum) that the store reads and writes:
/// `FromStr` (an [`UnknownState`] naming `$kind`) and `ToSql` besides.
macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident ($kind:literal) { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        crate::taskdef::model::wire_enum!($(#[$meta])* $name { $($(#[$vmeta])* $variant = $wire),+ });

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($wire => Ok(Self::$variant),)+
                    _ => Err(UnknownState { kind: $kind, value: s.to_string() }),
                }
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }
    };
}

state_enum!(
    /// A task's or a container's `lastStatus`. This host writes PROVISIONING, PENDING,
    /// RUNNING, DEPROVISIONING and STOPPED (containers: PENDING, RUNNING, STOPPED); the
    /// others are the rest of ECS's task lifecycle.
    /// Ref: ECS developer guide, "Amazon ECS task lifecycle"; ecs.json `Task.lastStatus`.
    #[derive(Default)]
    LastStatus("lastStatus") {
        #[default]
        Provisioning = "PROVISIONING",
        Pending = "PENDING",
        Activating = "ACTIVATING",
        Running = "RUNNING",
        Deactivating = "DEACTIVATING",
        Stopping = "STOPPING",
        Deprovisioning = "DEPROVISIONING",
        Stopped = "STOPPED",
        Deleted = "DELETED",
    }
);

state_enum!(
    /// A task's `desiredStatus` (and ListTasks' filter, `list-tasks --desired-status`).
    /// Ref: ecs.json `DesiredStatus`.
    #[derive(Default, clap::ValueEnum)]
    DesiredStatus("desiredStatus") {
        #[default]
        #[value(name = "RUNNING")]
        Running = "RUNNING",
        #[value(name = "PENDING")]
        Pending = "PENDING",
        #[value(name = "STOPPED")]
        Stopped = "STOPPED",
    }
);

state_enum!(
    /// A container's (and, worst over the essential ones, a task's) `healthStatus`.
    /// Ref: ecs.json `HealthStatus`.
    #[derive(Default)]
    HealthStatus("healthStatus") {
        Healthy = "HEALTHY",
        Unhealthy = "UNHEALTHY",
        #[default]
        Unknown = "UNKNOWN",
    }
);

state_enum!(
    /// Why a task stopped. Ref: ecs.json `TaskStopCode`.
    StopCode("stopCode") {
        TaskFailedToStart = "TaskFailedToStart",
        EssentialContainerExited = "EssentialContainerExited",
        UserInitiated = "UserInitiated",
        ServiceSchedulerInitiated = "ServiceSchedulerInitiated",
        SpotInterruption = "SpotInterruption",
        TerminationNotice = "TerminationNotice",
    }
);

state_enum!(
    /// A task's `connectivity`. Ref: ecs.json `Connectivity`.
    Connectivity("connectivity") {
        Connected = "CONNECTED",
        Disconnected = "DISCONNECTED",
    }
);

state_enum!(
    /// A service deployment's `status`. Ref: ecs.json `Deployment.status`.
    #[derive(Default)]
    DeploymentStatus("deployment status") {
        #[default]
        Primary = "PRIMARY",
        Active = "ACTIVE",
        Inactive = "INACTIVE",
    }
);

state_enum!(
    /// A deployment's `rolloutState`. Ref: ecs.json `DeploymentRolloutState`.
    #[derive(Default)]
    RolloutState("rolloutState") {
        Completed = "COMPLETED",
        Failed = "FAILED",
        #[default]
        InProgress = "IN_PROGRESS",
    }
);

state_enum!(
    /// A service's `status`. Ref: ecs.json `Service.status`.
    #[derive(Default)]
    ServiceStatus("service status") {
        #[default]
        Active = "ACTIVE",
        Draining = "DRAINING",
        Inactive = "INACTIVE",
    }
);

state_enum!(
    /// A cluster's `status`; this host writes ACTIVE and INACTIVE.
    /// Ref: ecs.json `Cluster.status`.
    #[derive(Default)]
    ClusterStatus("cluster status") {
        #[default]
        Active = "ACTIVE",
        Provisioning = "PROVISIONING",
        Deprovisioning = "DEPROVISIONING",
        Failed = "FAILED",
        Inactive = "INACTIVE",
    }
);

state_enum!(
    /// An ENI attachment's `status`; this host writes PRECREATED, ATTACHED, DELETED and
    /// FAILED. Ref: ecs.json `Attachment.status`.
    #[derive(Default)]
    AttachmentStatus("attachment status") {
        #[default]
        Precreated = "PRECREATED",
        Created = "CREATED",
        Attaching = "ATTACHING",
        Attached = "ATTACHED",
        Detaching = "DETACHING",
        Detached = "DETACHED",
        Deleted = "DELETED",
        Failed = "FAILED",
    }
);

state_enum!(
    /// A load balancer target's health `State`, as DescribeTargetHealth reports it, and
    /// `deregistered`: the console's history records that once a target is no longer
    /// listed (`crate::elb::history::GONE`; ELB has no state by that name).
    /// Ref: elbv2 service-2.json `TargetHealthStateEnum`.
    TargetHealthState("target health state") {
        Initial = "initial",
        Healthy = "healthy",
        Unhealthy = "unhealthy",
        UnhealthyDraining = "unhealthy.draining",
        Unused = "unused",
        Draining = "draining",
        Unavailable = "unavailable",
        Deregistered = "deregistered",
    }
);

state_enum!(
    /// A load balancer target's health `Reason` code.
    /// Ref: elbv2 service-2.json `TargetHealthReasonEnum`.
    TargetHealthReason("target health reason") {
        RegistrationInProgress = "Elb.RegistrationInProgress",
        InitialHealthChecking = "Elb.InitialHealthChecking",
        ResponseCodeMismatch = "Target.ResponseCodeMismatch",
        Timeout = "Target.Timeout",
        FailedHealthChecks = "Target.FailedHealthChecks",
        NotRegistered = "Target.NotRegistered",
        NotInUse = "Target.NotInUse",
        DeregistrationInProgress = "Target.DeregistrationInProgress",
        InvalidState = "Target.InvalidState",
        IpUnusable = "Target.IpUnusable",
        HealthCheckDisabled = "Target.HealthCheckDisabled",
        InternalError = "Elb.InternalError",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_their_ecs_spellings() {
        for s in [LastStatus::Provisioning, LastStatus::Deprovisioning] {
            assert_eq!(s.as_str().parse::<LastStatus>(), Ok(s));
        }
        assert_eq!(RolloutState::InProgress.to_string(), "IN_PROGRESS");
        assert_eq!(
            serde_json::to_string(&StopCode::ServiceSchedulerInitiated).unwrap(),
            r#""ServiceSchedulerInitiated""#
        );
        assert_eq!(
            "running".parse::<DesiredStatus>(),
            Err(UnknownState {
                kind: "desiredStatus",
                value: "running".into()
            })
        );
    }
}
