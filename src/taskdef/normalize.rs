//! What RegisterTaskDefinition stores: the input with ECS's conversions and defaults applied,
//! so that describe-task-definition prints what ECS would print.
//!
//! Ref: ecs.json `RegisterTaskDefinitionRequest.cpu`/`.memory` (unit strings "are converted to
//! an integer ... when the task definition is registered"), `ContainerDefinition.essential`
//! (defaults to true), `PortMapping.hostPort` (awsvpc and host: "the hostPort is set to the
//! same value as the containerPort"), `TaskDefinition.compatibilities` (the launch types the
//! definition validates against).

use super::model::{Compatibility, NetworkMode, TaskDefinition, TransportProtocol};
use super::units::{CpuUnits, MemoryMib};
use super::validate::fargate_compatible;

/// The register-time form of a validated definition. Read-only members (ARN, revision,
/// status, timestamps) are cleared: the store sets them. Tags are left in `tags`.
pub fn for_register(input: &TaskDefinition) -> TaskDefinition {
    let mut def = input.clone();
    def.task_definition_arn = None;
    def.revision = None;
    def.status = None;
    def.requires_attributes = None;
    def.registered_at = None;
    def.deregistered_at = None;
    def.delete_requested_at = None;
    def.registered_by = None;

    if let Some(cpu) = &def.cpu
        && let Ok(units) = CpuUnits::parse(cpu.as_str())
    {
        def.cpu = Some(super::model::SizeValue(units.to_string()));
    }
    if let Some(mem) = &def.memory
        && let Ok(mib) = MemoryMib::parse(mem.as_str())
    {
        def.memory = Some(super::model::SizeValue(mib.to_string()));
    }
    let mode = def.network_mode;
    for c in def.container_definitions.iter_mut().flatten() {
        c.cpu.get_or_insert(0);
        c.essential.get_or_insert(true);
        c.environment.get_or_insert_with(Vec::new);
        c.mount_points.get_or_insert_with(Vec::new);
        c.volumes_from.get_or_insert_with(Vec::new);
        for pm in c.port_mappings.get_or_insert_with(Vec::new) {
            if pm.container_port_range.is_none() {
                pm.protocol.get_or_insert(TransportProtocol::Tcp);
            }
            if matches!(mode, Some(NetworkMode::Awsvpc) | Some(NetworkMode::Host))
                && pm.host_port.is_none_or(|h| h == 0)
                && pm.container_port.is_some()
            {
                pm.host_port = pm.container_port;
            }
        }
    }
    def.volumes.get_or_insert_with(Vec::new);
    def.placement_constraints.get_or_insert_with(Vec::new);

    let mut compat = vec![Compatibility::Ec2];
    if fargate_compatible(&def) {
        compat.push(Compatibility::Fargate);
    }
    if mode != Some(NetworkMode::Awsvpc) {
        compat.push(Compatibility::External);
    }
    def.compatibilities = Some(compat);
    def
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_units_and_fills_defaults() {
        let input: TaskDefinition = serde_json::from_str(
            r#"{"family":"web","networkMode":"awsvpc","cpu":"1 vCPU","memory":"2 GB",
                "requiresCompatibilities":["FARGATE"],"revision":7,"status":"INACTIVE",
                "containerDefinitions":[{"name":"web","image":"busybox",
                "portMappings":[{"containerPort":8080}]}]}"#,
        )
        .unwrap();
        let def = for_register(&input);
        assert_eq!(def.cpu.as_ref().unwrap().as_str(), "1024");
        assert_eq!(def.memory.as_ref().unwrap().as_str(), "2048");
        assert_eq!(def.revision, None);
        assert_eq!(def.status, None);
        let c = &def.container_definitions.as_ref().unwrap()[0];
        assert_eq!(c.essential, Some(true));
        assert_eq!(c.cpu, Some(0));
        let pm = &c.port_mappings.as_ref().unwrap()[0];
        assert_eq!(pm.host_port, Some(8080));
        assert_eq!(pm.protocol, Some(TransportProtocol::Tcp));
        assert_eq!(
            def.compatibilities,
            Some(vec![Compatibility::Ec2, Compatibility::Fargate])
        );
    }

    #[test]
    fn bridge_definitions_are_ec2_and_external() {
        let input: TaskDefinition = serde_json::from_str(
            r#"{"family":"w","containerDefinitions":[{"name":"a","image":"b","memory":64}]}"#,
        )
        .unwrap();
        let def = for_register(&input);
        assert_eq!(
            def.compatibilities,
            Some(vec![Compatibility::Ec2, Compatibility::External])
        );
    }
}
