//! Names and ARNs every ECS resource file reads: the default cluster, the name rule of
//! clusters and services, and the cluster, service and task name inside an ARN.

use super::{EcsError, EcsResult};

/// The cluster ECS creates by itself on first use.
pub const DEFAULT: &str = "default";

/// The cluster name in a name or a cluster ARN (`…:cluster/<name>`).
pub fn cluster_name(s: &str) -> &str {
    s.rsplit_once(":cluster/").map_or(s, |(_, n)| n)
}

/// The name rule of clusters and services. Ref: ecs.json
/// `CreateClusterRequest.clusterName`, `CreateServiceRequest.serviceName`: up to 255
/// letters, numbers, underscores and hyphens.
pub fn check_name(member: &str, name: &str) -> EcsResult<()> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(EcsError::invalid(format!(
            "{member} {name:?}: up to 255 letters (uppercase and lowercase), numbers, \
             underscores, and hyphens are allowed"
        )));
    }
    Ok(())
}

/// The service name in a name or a service ARN (`…:service/<cluster>/<name>` or the old
/// `…:service/<name>`).
pub fn service_name(s: &str) -> &str {
    s.rsplit_once(":service/")
        .map_or(s, |(_, rest)| rest.rsplit('/').next().unwrap_or(rest))
}

/// The task id in an id or a task ARN (`…:task/<cluster>/<id>`).
pub fn task_id(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}
