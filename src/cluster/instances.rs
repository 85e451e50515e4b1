//! Container instances in etcd: the record an agent registers, and the view the API
//! answers with (the registration, its status, its liveness key, its custom attributes).

use super::etcd::{Etcd, EtcdError};
use super::keys;
use super::records::Undecodable;
use crate::ecs::container_instances::{
    Attribute, ContainerInstance, RESERVED_PORTS, Resource, VersionInfo,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an agent registers for its box (the RegisterContainerInstance equivalent):
/// the JSON value of `keys::instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The container instance id (32 hex), kept in the agent's state root.
    pub id: String,
    /// The box's host name (`spread` on `host`).
    pub hostname: String,
    /// The box's EC2 instance id (`ec2InstanceId`, the id an `instance` target group
    /// registers); absent in an older agent's registration: [`Self::ec2_instance_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_instance_id: Option<String>,
    /// When the instance first registered (ms since the epoch); kept across restarts.
    pub registered_at_ms: i64,
    /// CPU units (1,024 a core).
    pub cpu: i64,
    /// MiB of memory: /proc/meminfo's MemTotal less `ECS_RESERVED_MEMORY`, as ECS's
    /// agent registers it.
    pub memory: i64,
    /// The built-in attributes (`ecs.os-type`, `ecs.cpu-architecture`, `ecs.os-family`).
    pub attributes: BTreeMap<String, Option<String>>,
    pub agent_version: String,
    pub agent_hash: String,
    /// The agent's endpoint (`http://ADDR:PORT`, `agent --listen`): serves reach the
    /// box's logs there.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The box's address on the boxes' network (`agent --advertise-address`): the other
    /// boxes route its task subnet via it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    /// The task subnet the box holds (docs/cluster.md "Task addresses across boxes").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_subnet: Option<String>,
    /// The registered PORTS (`ECS_RESERVED_PORTS`; absent: ECS's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_ports: Option<Vec<u16>>,
    /// The registered PORTS_UDP (`ECS_RESERVED_PORTS_UDP`; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_ports_udp: Option<Vec<u16>>,
}

impl Registration {
    /// This box's registration as instance `id`.
    pub fn of_this_box(id: &str, registered_at_ms: i64) -> Registration {
        let (cpu, memory) = crate::ecs::container_instances::host_resources();
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        Registration {
            id: id.into(),
            hostname,
            ec2_instance_id: Some(crate::store::instance_id::derived(id)),
            registered_at_ms,
            cpu,
            memory,
            attributes: crate::ecs::container_instances::builtin_attributes()
                .into_iter()
                .map(|a| (a.name, a.value))
                .collect(),
            agent_version: crate::ecs::container_instances::AGENT_VERSION.into(),
            agent_hash: env!("CARGO_PKG_VERSION").into(),
            endpoint: None,
            address: None,
            task_subnet: None,
            reserved_ports: None,
            reserved_ports_udp: None,
        }
    }

    /// The box's EC2 instance id: as registered, else derived from the instance id.
    pub fn ec2_instance_id(&self) -> String {
        self.ec2_instance_id
            .clone()
            .unwrap_or_else(|| crate::store::instance_id::derived(&self.id))
    }

    /// The TCP ports no task may take here.
    pub fn reserved_tcp(&self) -> Vec<u16> {
        self.reserved_ports
            .clone()
            .unwrap_or_else(|| RESERVED_PORTS.to_vec())
    }

    /// The UDP ports no task may take here.
    pub fn reserved_udp(&self) -> Vec<u16> {
        self.reserved_ports_udp.clone().unwrap_or_default()
    }
}

/// An instance's status (`keys::status`). Ref: ecs.json `ContainerInstance.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Draining,
    Inactive,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Draining => "DRAINING",
            Status::Inactive => "INACTIVE",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "ACTIVE" => Some(Status::Active),
            "DRAINING" => Some(Status::Draining),
            "INACTIVE" => Some(Status::Inactive),
            _ => None,
        }
    }
}

/// A container instance as the API sees it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub cluster: String,
    pub reg: Registration,
    pub status: Status,
    /// The revision its status key was read at: a decision on the status (placement,
    /// deregistration, a state change) holds only if it is unchanged.
    pub status_revision: i64,
    /// Its liveness key exists: its agent's lease is alive.
    pub connected: bool,
    /// Custom attributes (PutAttributes, `agent --attribute`): name → value.
    pub custom: BTreeMap<String, Option<String>>,
    /// The etcd revision of the instance's last change (ECS's `version` grows with each).
    pub version: i64,
    /// What the tasks placed on it and not yet STOPPED reserve.
    pub ledger: super::records::Ledger,
    /// The revision its ledger was read at (0: it has none yet): a placement's
    /// transaction holds only if it is unchanged.
    pub ledger_revision: i64,
}

impl Instance {
    /// Its ARN (`…:container-instance/<cluster>/<id>`).
    pub fn arn(&self) -> String {
        arn(&self.cluster, &self.reg.id)
    }

    /// Every attribute: the built-in ones, then the custom ones.
    pub fn attributes(&self) -> Vec<Attribute> {
        self.reg
            .attributes
            .iter()
            .chain(self.custom.iter())
            .map(|(n, v)| Attribute {
                name: n.clone(),
                value: v.clone(),
                ..Default::default()
            })
            .collect()
    }

    /// The attribute `name`'s value: `Some(None)` for one without a value.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.custom
            .get(name)
            .or_else(|| self.reg.attributes.get(name))
            .map(Option::as_deref)
    }

    /// As ECS's `ContainerInstance`: remaining = registered − the ledger's reservations;
    /// `runningTasksCount` counts the tasks placed and not yet STOPPED.
    pub fn shape(&self) -> ContainerInstance {
        let resources = vec![
            Resource::integer("CPU", self.reg.cpu),
            Resource::integer("MEMORY", self.reg.memory),
            Resource::ports("PORTS", &self.reg.reserved_tcp()),
            Resource::ports("PORTS_UDP", &self.reg.reserved_udp()),
        ];
        let mut ports: Vec<u16> = self.reg.reserved_tcp();
        let mut udp: Vec<u16> = self.reg.reserved_udp();
        for r in self.ledger.tasks.values() {
            ports.extend(&r.ports);
            udp.extend(&r.udp_ports);
        }
        ports.sort_unstable();
        ports.dedup();
        udp.sort_unstable();
        udp.dedup();
        let remaining = vec![
            Resource::integer("CPU", self.reg.cpu - self.ledger.cpu()),
            Resource::integer("MEMORY", self.reg.memory - self.ledger.memory()),
            Resource::ports("PORTS", &ports),
            Resource::ports("PORTS_UDP", &udp),
        ];
        ContainerInstance {
            agent_connected: self.connected,
            ec2_instance_id: Some(self.reg.ec2_instance_id()),
            attachments: Vec::new(),
            attributes: self.attributes(),
            container_instance_arn: self.arn(),
            pending_tasks_count: 0,
            registered_at: crate::taskdef::timestamp::Timestamp::from_ms(self.reg.registered_at_ms),
            registered_resources: resources,
            remaining_resources: remaining,
            running_tasks_count: self.ledger.tasks.len() as i64,
            status: self.status.as_str().into(),
            tags: Vec::new(),
            version: self.version,
            version_info: VersionInfo {
                agent_version: self.reg.agent_version.clone(),
                agent_hash: self.reg.agent_hash.clone(),
            },
        }
    }
}

/// What the cluster query language asks of a registered instance (ListContainerInstances
/// `filter`). Nothing runs on an instance in this record (its tasks are placement's
/// [`crate::ecs::placement::Candidate::tasks`]): no task group, no running task.
impl crate::taskdef::query::Subjects for Instance {
    fn agent_connected(&self) -> bool {
        self.connected
    }
    fn agent_version(&self) -> &str {
        &self.reg.agent_version
    }
    fn ec2_instance_id(&self) -> &str {
        // (`load` fills it in for an older agent's registration.)
        self.reg.ec2_instance_id.as_deref().unwrap_or_default()
    }
    fn registered_at_ms(&self) -> i64 {
        self.reg.registered_at_ms
    }
    fn running_tasks_count(&self) -> i64 {
        self.ledger.tasks.len() as i64
    }
    fn attribute_value(&self, name: &str) -> Option<Option<&str>> {
        self.attribute(name)
    }
    fn task_groups(&self) -> Vec<&str> {
        self.ledger
            .tasks
            .values()
            .map(|r| r.group.as_str())
            .collect()
    }
}

/// Container instance `id`'s ARN in `cluster`.
pub fn arn(cluster: &str, id: &str) -> String {
    crate::taskdef::AwsContext::from_env().ecs_arn(&format!("container-instance/{cluster}/{id}"))
}

/// Every container instance of `cluster` (INACTIVE ones included), in id order: five
/// range reads, one a prefix.
pub async fn load(etcd: &Etcd, cluster: &str) -> Result<Vec<Instance>, EtcdError> {
    let ledgers = etcd.get_prefix(&keys::ledger_all(cluster)).await?;
    let regs = etcd.get_prefix(&keys::instances(cluster)).await?;
    let alive = etcd.get_prefix(&keys::alive_all(cluster)).await?;
    let status = etcd.get_prefix(&keys::status_all(cluster)).await?;
    let attrs = etcd.get_prefix(&keys::attributes_all(cluster)).await?;
    let tail = |kv: &super::etcd::Kv, prefix: &str| kv.key[prefix.len()..].to_string();
    let mut out = Vec::new();
    for kv in &regs {
        let Ok(mut reg) = serde_json::from_slice::<Registration>(&kv.value) else {
            tracing::warn!(key = %kv.key, "not a container instance registration; left out");
            continue;
        };
        reg.ec2_instance_id = Some(reg.ec2_instance_id());
        let id = reg.id.clone();
        let mut version = kv.mod_revision;
        // The agent creates the status before its registration: a registration without
        // one, or a status that is none of the three, is not taken for ACTIVE.
        let status_key = keys::status(cluster, &id);
        let st = status
            .iter()
            .find(|s| s.key == status_key)
            .ok_or_else(|| Undecodable {
                key: status_key.clone(),
                why: format!(
                    "missing, while instance {id} is registered: set it (`etcdctl put \
                     {status_key} ACTIVE`, DRAINING or INACTIVE)"
                ),
            })?;
        let (st, status_revision) =
            match std::str::from_utf8(&st.value).ok().and_then(Status::parse) {
                Some(v) => (v, st.mod_revision),
                None => {
                    return Err(Undecodable {
                        key: status_key,
                        why: format!(
                            "{:?} is not ACTIVE, DRAINING or INACTIVE: set one with etcdctl put",
                            String::from_utf8_lossy(&st.value)
                        ),
                    }
                    .into());
                }
            };
        version = version.max(status_revision);
        let live = alive
            .iter()
            .find(|s| tail(s, &keys::alive_all(cluster)) == id);
        if let Some(a) = live {
            version = version.max(a.mod_revision);
        }
        let prefix = keys::attributes(cluster, &id);
        let mut custom = BTreeMap::new();
        for a in attrs.iter().filter(|a| a.key.starts_with(&prefix)) {
            version = version.max(a.mod_revision);
            custom.insert(tail(a, &prefix), attribute_value(&a.value));
        }
        let ledger_key = keys::ledger(cluster, &id);
        let (ledger, ledger_revision) = match ledgers.iter().find(|l| l.key == ledger_key) {
            Some(l) => {
                version = version.max(l.mod_revision);
                (super::records::decode(&l.key, &l.value)?, l.mod_revision)
            }
            None => Default::default(),
        };
        out.push(Instance {
            ledger,
            ledger_revision,
            cluster: cluster.into(),
            status: st,
            status_revision,
            connected: live.is_some(),
            custom,
            version,
            reg,
        });
    }
    Ok(out)
}

/// Every registered box's EC2 instance id and the address it is reached at (its
/// `--advertise-address`, else its endpoint's host), over every cluster: where the load
/// balancers reach an `instance` target.
pub async fn ec2_addresses(
    etcd: &Etcd,
) -> Result<std::collections::HashMap<String, std::net::IpAddr>, EtcdError> {
    let clusters = keys::cluster_names(
        &etcd.keys_with_prefix(&keys::clusters()).await?,
        "instances",
    );
    let mut out = std::collections::HashMap::new();
    for c in clusters {
        for kv in etcd.get_prefix(&keys::instances(&c)).await? {
            let Ok(reg) = serde_json::from_slice::<Registration>(&kv.value) else {
                continue;
            };
            let from_endpoint = || {
                let e = reg.endpoint.as_deref()?;
                let host = e.strip_prefix("http://").unwrap_or(e);
                let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
                host.parse::<std::net::IpAddr>().ok()
            };
            if let Some(ip) = reg.address.map(std::net::IpAddr::V4).or_else(from_endpoint) {
                out.insert(reg.ec2_instance_id(), ip);
            }
        }
    }
    Ok(out)
}

/// A custom attribute's stored value: JSON `null` for an attribute without one.
pub fn attribute_value(raw: &[u8]) -> Option<String> {
    serde_json::from_slice::<Option<String>>(raw)
        .unwrap_or_else(|_| Some(String::from_utf8_lossy(raw).into_owned()))
}

/// How a custom attribute's value is stored.
pub fn attribute_bytes(value: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap_or_default()
}
