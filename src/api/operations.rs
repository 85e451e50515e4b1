//! The ECS operations `serve` answers, with what each does here: one table, from which the
//! lists in README.md and docs/serve.md are rendered, and which a test checks against the
//! dispatcher (`super::ecs::call`) and the ECS service model the AWS CLI carries: every
//! row is dispatched, and every other operation of the model is UnknownOperationException.

/// One ECS operation `serve` answers.
pub struct Operation {
    pub name: &'static str,
    /// What it does here (members honoured, local differences); rendered into
    /// docs/serve.md by the test below.
    #[cfg_attr(not(test), allow(dead_code))]
    pub notes: &'static str,
}

const fn op(name: &'static str, notes: &'static str) -> Operation {
    Operation { name, notes }
}

/// Every ECS operation the dispatcher answers, grouped by resource.
pub const OPERATIONS: &[Operation] = &[
    op(
        "RegisterTaskDefinition",
        "the same validation as `minifargate register-task-definition`; `tags` kept",
    ),
    op("DescribeTaskDefinition", "`include: [\"TAGS\"]`"),
    op("ListTaskDefinitions", "`familyPrefix`, `status`, `sort`"),
    op(
        "ListTaskDefinitionFamilies",
        "`familyPrefix`, `status` (ACTIVE, INACTIVE or ALL, the default)",
    ),
    op("DeregisterTaskDefinition", ""),
    op(
        "DeleteTaskDefinitions",
        "INACTIVE revisions become DELETE_IN_PROGRESS, and are removed once no task, service or deployment uses them (the family keeps counting revisions); an ACTIVE one is a failure",
    ),
    op(
        "RunTask",
        "every member; what each does here is in [taskdefs.md](taskdefs.md#what-this-host-does-with-each-member) (RunTask table): capacity provider strategies resolve to FARGATE (`capacityProviderName`), `platformVersion`, `propagateTags`, ECS managed tags, `clientToken` idempotency (24 h, per cluster), placement recorded with a warning",
    ),
    op(
        "StartTask",
        "one EC2 task on each named container instance (this host; any other is a MISSING failure)",
    ),
    op(
        "StopTask",
        "`reason` becomes `stoppedReason`; answers once `desiredStatus` is STOPPED",
    ),
    op(
        "DescribeTasks",
        "`include: [\"TAGS\"]`; unknown ids are MISSING failures; the task's warnings are `attributes` named `minifargate.warning`",
    ),
    op(
        "ListTasks",
        "`family`, `desiredStatus`, `startedBy`, `serviceName`, `launchType`, `containerInstance`, ANDed (ECS's model says `startedBy` must be the only filter; what ECS answers otherwise is undocumented, so nothing is refused)",
    ),
    op(
        "UpdateTaskProtection",
        "a service's tasks; `expiresInMinutes` 1-2880 (120 by default); honoured by the service scheduler",
    ),
    op(
        "GetTaskProtection",
        "also served inside the task at `$ECS_AGENT_URI/task-protection/v1/state`",
    ),
    op(
        "ListContainerInstances",
        "this host, the one container instance of each ACTIVE cluster; `filter` on its attributes",
    ),
    op(
        "DescribeContainerInstances",
        "registered and remaining CPU, memory and ports as the EC2 tasks use them; the agent's attributes and capabilities",
    ),
    op(
        "CreateCluster",
        "`settings`, `capacityProviders` (FARGATE, FARGATE_SPOT), `defaultCapacityProviderStrategy`, `configuration`, `serviceConnectDefaults` and `tags` stored",
    ),
    op(
        "DescribeClusters",
        "task, service and container instance counts; `include` SETTINGS, CONFIGURATIONS, TAGS, STATISTICS (by launch type), ATTACHMENTS (none: Fargate's providers have none)",
    ),
    op("ListClusters", ""),
    op("DeleteCluster", "refused while tasks are not STOPPED"),
    op(
        "UpdateCluster",
        "`settings`, `configuration`, `serviceConnectDefaults` stored and returned",
    ),
    op(
        "UpdateClusterSettings",
        "containerInsights stored and returned",
    ),
    op(
        "PutClusterCapacityProviders",
        "FARGATE and FARGATE_SPOT; the default strategy RunTask uses without a launch type",
    ),
    op(
        "DescribeCapacityProviders",
        "FARGATE and FARGATE_SPOT; others are MISSING failures",
    ),
    op(
        "CreateService",
        "see [Services](#services); the scheduler runs in `serve`",
    ),
    op("UpdateService", "see [Services](#services)"),
    op("DescribeServices", ""),
    op(
        "ListServices",
        "paginated; `launchType`, `schedulingStrategy`, `resourceManagementType` (every service is CUSTOMER)",
    ),
    op("DeleteService", "DRAINING, then INACTIVE"),
    op(
        "ListServicesByNamespace",
        "the clusters' `serviceConnectDefaults` namespaces (no Cloud Map here); others are NamespaceNotFoundException",
    ),
    op(
        "TagResource",
        "clusters, task definitions, tasks and services, by ARN",
    ),
    op("UntagResource", ""),
    op("ListTagsForResource", ""),
    op(
        "ListAccountSettings",
        "the caller's (the account root) or, with `effectiveSettings`, every setting's effective value",
    ),
    op("PutAccountSetting", "stored per principal"),
    op(
        "PutAccountSettingDefault",
        "stored; `containerInsights` is what a new cluster starts with",
    ),
];

/// The table as Markdown (docs/serve.md).
#[cfg(test)]
pub fn markdown() -> String {
    let mut s = String::from("| Operation | Notes |\n|---|---|\n");
    for o in OPERATIONS {
        s.push_str(&format!("| {} | {} |\n", o.name, o.notes));
    }
    s
}

/// The names as one line (README.md).
pub fn names() -> String {
    OPERATIONS
        .iter()
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::{Ecs, EcsError};
    use std::collections::BTreeSet;

    #[test]
    fn the_table_is_what_the_dispatcher_answers() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = Ecs {
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
            config: None,
            log_level: "error".into(),
            userns: Default::default(),
        };
        let ours: BTreeSet<&str> = OPERATIONS.iter().map(|o| o.name).collect();
        assert_eq!(ours.len(), OPERATIONS.len(), "an operation listed twice");
        let model = crate::ecs::botocore_model::service_model();
        let all: BTreeSet<String> = model["operations"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut wrong = Vec::new();
        for op in &all {
            // `{}` is refused by every operation that would change something, before it
            // does (a required member is missing), so nothing here starts a task.
            let unknown = matches!(
                super::super::ecs::call(&ecs, op, b"{}"),
                Err(EcsError::UnknownOperation(_))
            );
            if ours.contains(op.as_str()) == unknown {
                wrong.push(format!(
                    "{op}: {} in the table, {} by the dispatcher",
                    if unknown { "listed" } else { "not listed" },
                    if unknown { "unknown" } else { "answered" }
                ));
            }
        }
        for o in &ours {
            if !all.contains(*o) {
                wrong.push(format!("{o}: not an operation of the ECS model"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn readme_and_serve_md_list_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (file, body) in [
            ("README.md", format!("{}.\n", names())),
            ("docs/serve.md", markdown()),
        ] {
            let path = root.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let (begin, end) = ("<!-- operations:begin -->\n", "<!-- operations:end -->");
            let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
                panic!("{file} lacks the markers {begin:?} and {end:?}");
            };
            let mut want = text.clone();
            want.replace_range(b + begin.len()..e, &body);
            if want != text {
                if std::env::var_os("UPDATE_DOCS").is_some() {
                    std::fs::write(&path, &want).unwrap();
                } else {
                    panic!(
                        "{file}'s operations differ from api::operations; run `UPDATE_DOCS=1 \
                         cargo test --bin minifargate api::operations` to rewrite them"
                    );
                }
            }
        }
    }
}
