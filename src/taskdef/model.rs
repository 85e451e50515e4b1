//! Serde model of an ECS task definition: every member of `RegisterTaskDefinition`'s input
//! plus the read-only members `DescribeTaskDefinition` adds, shaped like the ECS API model.
//!
//! Ref: the ECS Smithy model (`aws-sdk-go-v2/aws-models/ecs.json` in aws/amazon-ecs-agent),
//! shapes `RegisterTaskDefinitionRequest`, `TaskDefinition`, `ContainerDefinition` and the
//! shapes they reference. Every member is optional here, even the ones ECS requires: explicit
//! `null`s (console exports) and missing members both become `None`, and the validator reports
//! what ECS requires with the member's JSON path rather than failing the whole parse.
//! Integers are `i64` so that out-of-range values reach the validator instead of becoming type
//! errors. Unknown members are ignored by serde and reported as warnings by the parser.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// A whole task definition: the register input, or the `taskDefinition` of a describe output.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    // Read-only members of a describe output; ignored on input, filled in on register.
    pub task_definition_arn: Option<String>,
    pub container_definitions: Option<Vec<ContainerDefinition>>,
    pub family: Option<String>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    pub network_mode: Option<NetworkMode>,
    pub revision: Option<i64>,
    pub volumes: Option<Vec<Volume>>,
    pub status: Option<TaskDefinitionStatus>,
    pub requires_attributes: Option<Vec<Attribute>>,
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    pub compatibilities: Option<Vec<Compatibility>>,
    pub runtime_platform: Option<RuntimePlatform>,
    pub requires_compatibilities: Option<Vec<Compatibility>>,
    /// Task CPU: `"1024"`, `1024`, `"1 vCPU"`; see [`super::units::CpuUnits`].
    pub cpu: Option<SizeValue>,
    /// Task memory: `"2048"`, `2048`, `"2 GB"`; see [`super::units::MemoryMib`].
    pub memory: Option<SizeValue>,
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    pub pid_mode: Option<PidMode>,
    pub ipc_mode: Option<IpcMode>,
    pub proxy_configuration: Option<ProxyConfiguration>,
    /// Timestamps are kept as whatever JSON the input had (the AWS CLI prints ISO 8601
    /// strings, the API epoch seconds); minifargate writes ISO 8601 strings.
    pub registered_at: Option<super::timestamp::Timestamp>,
    pub deregistered_at: Option<super::timestamp::Timestamp>,
    pub delete_requested_at: Option<super::timestamp::Timestamp>,
    pub registered_by: Option<String>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub enable_fault_injection: Option<bool>,
    /// Register input only: DescribeTaskDefinition returns tags beside the task definition.
    #[serde(skip_serializing)]
    pub tags: Option<Vec<Tag>>,
}

/// One container of a task definition (ECS shape `ContainerDefinition`).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    pub name: Option<String>,
    pub image: Option<String>,
    pub repository_credentials: Option<RepositoryCredentials>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub links: Option<Vec<String>>,
    pub port_mappings: Option<Vec<PortMapping>>,
    pub essential: Option<bool>,
    pub restart_policy: Option<RestartPolicy>,
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub environment: Option<Vec<KeyValuePair>>,
    pub environment_files: Option<Vec<EnvironmentFile>>,
    pub mount_points: Option<Vec<MountPoint>>,
    pub volumes_from: Option<Vec<VolumeFrom>>,
    pub linux_parameters: Option<LinuxParameters>,
    pub secrets: Option<Vec<Secret>>,
    pub depends_on: Option<Vec<ContainerDependency>>,
    pub start_timeout: Option<i64>,
    pub stop_timeout: Option<i64>,
    pub version_consistency: Option<VersionConsistency>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_directory: Option<String>,
    pub disable_networking: Option<bool>,
    pub privileged: Option<bool>,
    pub readonly_root_filesystem: Option<bool>,
    pub dns_servers: Option<Vec<String>>,
    pub dns_search_domains: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<HostEntry>>,
    pub docker_security_options: Option<Vec<String>>,
    pub interactive: Option<bool>,
    pub pseudo_terminal: Option<bool>,
    pub docker_labels: Option<BTreeMap<String, String>>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub log_configuration: Option<LogConfiguration>,
    pub health_check: Option<HealthCheck>,
    pub system_controls: Option<Vec<SystemControl>>,
    pub resource_requirements: Option<Vec<ResourceRequirement>>,
    pub firelens_configuration: Option<FirelensConfiguration>,
    pub credential_specs: Option<Vec<String>>,
}

impl ContainerDefinition {
    /// `essential` defaults to true when absent or null.
    /// Ref: ecs.json `ContainerDefinition.essential` ("If this parameter is omitted, a
    /// container is assumed to be essential").
    pub fn is_essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }

    /// The container's name, or "" when it has none (the validator reports that).
    pub fn name_str(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCredentials {
    pub credentials_parameter: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: Option<i64>,
    pub host_port: Option<i64>,
    pub protocol: Option<TransportProtocol>,
    pub name: Option<String>,
    pub app_protocol: Option<ApplicationProtocol>,
    pub container_port_range: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicy {
    pub enabled: Option<bool>,
    pub ignored_exit_codes: Option<Vec<i64>>,
    pub restart_attempt_period: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValuePair {
    pub name: Option<String>,
    pub value: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentFile {
    pub value: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<EnvironmentFileType>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub source_volume: Option<String>,
    pub container_path: Option<String>,
    pub read_only: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    pub source_container: Option<String>,
    pub read_only: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    pub capabilities: Option<KernelCapabilities>,
    pub devices: Option<Vec<Device>>,
    pub init_process_enabled: Option<bool>,
    pub shared_memory_size: Option<i64>,
    pub tmpfs: Option<Vec<Tmpfs>>,
    pub max_swap: Option<i64>,
    pub swappiness: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelCapabilities {
    pub add: Option<Vec<String>>,
    pub drop: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub host_path: Option<String>,
    pub container_path: Option<String>,
    pub permissions: Option<Vec<DeviceCgroupPermission>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tmpfs {
    pub container_path: Option<String>,
    pub size: Option<i64>,
    pub mount_options: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: Option<String>,
    pub value_from: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    pub container_name: Option<String>,
    pub condition: Option<ContainerCondition>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEntry {
    pub hostname: Option<String>,
    pub ip_address: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    pub name: Option<UlimitName>,
    pub soft_limit: Option<i64>,
    pub hard_limit: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    pub log_driver: Option<LogDriver>,
    pub options: Option<BTreeMap<String, String>>,
    pub secret_options: Option<Vec<Secret>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub command: Option<Vec<String>>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub retries: Option<i64>,
    pub start_period: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemControl {
    pub namespace: Option<String>,
    pub value: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirement {
    pub value: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<ResourceType>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirelensConfiguration {
    #[serde(rename = "type")]
    pub kind: Option<FirelensType>,
    pub options: Option<BTreeMap<String, String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: Option<String>,
    pub host: Option<HostVolumeProperties>,
    pub docker_volume_configuration: Option<DockerVolumeConfiguration>,
    pub efs_volume_configuration: Option<EfsVolumeConfiguration>,
    pub fsx_windows_file_server_volume_configuration: Option<FsxWindowsVolumeConfiguration>,
    /// An Amazon S3 Files file system (ecs.json `Volume.s3filesVolumeConfiguration`; note the
    /// lowercase `f`, as the model spells it).
    #[serde(rename = "s3filesVolumeConfiguration")]
    pub s3files_volume_configuration: Option<S3FilesVolumeConfiguration>,
    pub configured_at_launch: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostVolumeProperties {
    pub source_path: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerVolumeConfiguration {
    pub scope: Option<DockerVolumeScope>,
    pub autoprovision: Option<bool>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EfsVolumeConfiguration {
    pub file_system_id: Option<String>,
    pub root_directory: Option<String>,
    pub transit_encryption: Option<EnabledDisabled>,
    pub transit_encryption_port: Option<i64>,
    pub authorization_config: Option<EfsAuthorizationConfig>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3FilesVolumeConfiguration {
    pub file_system_arn: Option<String>,
    pub root_directory: Option<String>,
    pub transit_encryption_port: Option<i64>,
    pub access_point_arn: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EfsAuthorizationConfig {
    pub access_point_id: Option<String>,
    pub iam: Option<EnabledDisabled>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsxWindowsVolumeConfiguration {
    pub file_system_id: Option<String>,
    pub root_directory: Option<String>,
    pub authorization_config: Option<FsxWindowsAuthorizationConfig>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsxWindowsAuthorizationConfig {
    pub credentials_parameter: Option<String>,
    pub domain: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: Option<String>,
    pub value: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementConstraint {
    #[serde(rename = "type")]
    pub kind: Option<PlacementConstraintType>,
    pub expression: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePlatform {
    pub cpu_architecture: Option<CpuArchitecture>,
    pub operating_system_family: Option<OsFamily>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceAccelerator {
    pub device_name: Option<String>,
    pub device_type: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfiguration {
    #[serde(rename = "type")]
    pub kind: Option<ProxyConfigurationType>,
    pub container_name: Option<String>,
    pub properties: Option<Vec<KeyValuePair>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralStorage {
    #[serde(rename = "sizeInGiB")]
    pub size_in_gib: Option<i64>,
}

/// A resource tag. ECS spells the members `key`/`value` (lower case).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// Task-level `cpu` or `memory` exactly as written: ECS's model types them as strings, but
/// users write numbers (`1024`) and unit strings (`"1 vCPU"`, `"2 GB"`) too. Numbers are
/// kept as their decimal text; [`super::units`] turns the text into typed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeValue(pub String);

impl SizeValue {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for SizeValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a string such as \"1024\", \"1 vCPU\" or \"2 GB\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SizeValue, E> {
                Ok(SizeValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<SizeValue, E> {
                Ok(SizeValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Declares a string enum of the ECS model: exact wire spellings, plus optional aliases that
/// real files use (e.g. `"TCP"`), `as_str` and `Display`. The store's state enums are
/// declared with it too (`store::states`).
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $wire $(, alias = $alias)*)]
                $variant,
            )+
        }

        impl $name {
            /// The ECS spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// Ref: ecs.json `NetworkMode`. Absent means `bridge` on Linux EC2.
    NetworkMode { Bridge = "bridge", Host = "host", Awsvpc = "awsvpc", None = "none" }
);
wire_enum!(
    /// Ref: ecs.json `Compatibility`; MANAGED_INSTANCES is the launch type ECS added in 2025.
    Compatibility {
        Ec2 = "EC2",
        Fargate = "FARGATE",
        External = "EXTERNAL",
        ManagedInstances = "MANAGED_INSTANCES",
    }
);
wire_enum!(
    TaskDefinitionStatus {
        Active = "ACTIVE",
        Inactive = "INACTIVE",
        DeleteInProgress = "DELETE_IN_PROGRESS",
    }
);
wire_enum!(PidMode { Host = "host", Task = "task" });
wire_enum!(IpcMode { Host = "host", Task = "task", None = "none" });
wire_enum!(TransportProtocol { Tcp = "tcp" | "TCP", Udp = "udp" | "UDP" });
wire_enum!(ApplicationProtocol { Http = "http", Http2 = "http2", Grpc = "grpc" });
wire_enum!(EnvironmentFileType { S3 = "s3" });
wire_enum!(DeviceCgroupPermission { Read = "read", Write = "write", Mknod = "mknod" });
wire_enum!(
    /// Ref: ecs.json `ContainerCondition`.
    ContainerCondition {
        Start = "START",
        Complete = "COMPLETE",
        Success = "SUCCESS",
        Healthy = "HEALTHY",
    }
);
wire_enum!(VersionConsistency { Enabled = "enabled", Disabled = "disabled" });
wire_enum!(
    UlimitName {
        Core = "core",
        Cpu = "cpu",
        Data = "data",
        Fsize = "fsize",
        Locks = "locks",
        Memlock = "memlock",
        Msgqueue = "msgqueue",
        Nice = "nice",
        Nofile = "nofile",
        Nproc = "nproc",
        Rss = "rss",
        Rtprio = "rtprio",
        Rttime = "rttime",
        Sigpending = "sigpending",
        Stack = "stack",
    }
);
wire_enum!(
    /// Ref: ecs.json `LogDriver`.
    LogDriver {
        JsonFile = "json-file",
        Syslog = "syslog",
        Journald = "journald",
        Gelf = "gelf",
        Fluentd = "fluentd",
        Awslogs = "awslogs",
        Splunk = "splunk",
        Awsfirelens = "awsfirelens",
    }
);
wire_enum!(ResourceType { Gpu = "GPU", InferenceAccelerator = "InferenceAccelerator" });
wire_enum!(FirelensType { Fluentd = "fluentd", Fluentbit = "fluentbit" });
wire_enum!(DockerVolumeScope { Task = "task", Shared = "shared" });
wire_enum!(EnabledDisabled { Enabled = "ENABLED", Disabled = "DISABLED" });
wire_enum!(PlacementConstraintType { MemberOf = "memberOf" });
wire_enum!(CpuArchitecture { X8664 = "X86_64", Arm64 = "ARM64" });
wire_enum!(
    OsFamily {
        Linux = "LINUX",
        WindowsServer2019Full = "WINDOWS_SERVER_2019_FULL",
        WindowsServer2019Core = "WINDOWS_SERVER_2019_CORE",
        WindowsServer2016Full = "WINDOWS_SERVER_2016_FULL",
        WindowsServer2004Core = "WINDOWS_SERVER_2004_CORE",
        WindowsServer2022Core = "WINDOWS_SERVER_2022_CORE",
        WindowsServer2022Full = "WINDOWS_SERVER_2022_FULL",
        WindowsServer2025Core = "WINDOWS_SERVER_2025_CORE",
        WindowsServer2025Full = "WINDOWS_SERVER_2025_FULL",
        WindowsServer20H2Core = "WINDOWS_SERVER_20H2_CORE",
    }
);
wire_enum!(ProxyConfigurationType { AppMesh = "APPMESH" });

impl OsFamily {
    pub fn is_windows(self) -> bool {
        self != OsFamily::Linux
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_nulls_become_none() {
        let td: TaskDefinition = serde_json::from_str(
            r#"{"family":"a","cpu":null,"containerDefinitions":[{"name":"x","essential":null,
                "portMappings":null,"memory":null}]}"#,
        )
        .unwrap();
        let c = &td.container_definitions.as_ref().unwrap()[0];
        assert!(td.cpu.is_none());
        assert!(c.is_essential());
        assert!(c.port_mappings.is_none());
    }

    #[test]
    fn size_value_accepts_numbers_and_strings() {
        let td: TaskDefinition = serde_json::from_str(r#"{"cpu":1024,"memory":"2 GB"}"#).unwrap();
        assert_eq!(td.cpu.unwrap().as_str(), "1024");
        assert_eq!(td.memory.unwrap().as_str(), "2 GB");
    }

    #[test]
    fn enums_use_wire_spellings_and_aliases() {
        let p: PortMapping = serde_json::from_str(r#"{"protocol":"TCP"}"#).unwrap();
        assert_eq!(p.protocol, Some(TransportProtocol::Tcp));
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"protocol":"tcp"}"#);
        assert!(serde_json::from_str::<PortMapping>(r#"{"protocol":"sctp"}"#).is_err());
    }

    #[test]
    fn serializes_without_nones_and_without_tags() {
        let td = TaskDefinition {
            family: Some("web".into()),
            tags: Some(vec![Tag {
                key: Some("k".into()),
                value: None,
            }]),
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&td).unwrap(), r#"{"family":"web"}"#);
    }
}
