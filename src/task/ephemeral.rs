//! The size of a task's ephemeral storage, ECS's rule: what the task's JSON shows and the
//! supervisor's ephemeral storage step makes (`supervisor::isolation::ephemeral`).

use crate::taskdef::model::TaskDefinition;

/// Fargate's default and minimum. Ref: ecs.json `EphemeralStorage` (20–200 GiB);
/// docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html.
pub const DEFAULT_GIB: i64 = 20;

/// The size a task's ephemeral storage has: the definition's, else Fargate's 20 GiB.
pub fn size_gib(def: &TaskDefinition) -> i64 {
    def.ephemeral_storage
        .as_ref()
        .and_then(|e| e.size_in_gib)
        .unwrap_or(DEFAULT_GIB)
}
