//! Container instances in etcd: the record an agent registers, and the view the API
//! answers with (the registration, its status, its liveness key, its custom attributes).

use super::etcd::{Etcd, EtcdError};
use super::keys;
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

/// The largest registration a reader takes (its JSON): the agent's is about 1 KiB.
pub const REGISTRATION_MAX: usize = 64 * 1024;

/// Every container instance of `cluster` (INACTIVE ones included), in id order: five
/// range reads, one a prefix. A value that does not decode or is out of bounds is left
/// out and said once ([`assemble`]), never an error for the whole cluster (issue 73: a
/// box writes its own registration and attributes).
pub async fn load(etcd: &Etcd, cluster: &str) -> Result<Vec<Instance>, EtcdError> {
    let read = Read {
        ledgers: etcd.get_prefix(&keys::ledger_all(cluster)).await?,
        regs: etcd.get_prefix(&keys::instances(cluster)).await?,
        alive: etcd.get_prefix(&keys::alive_all(cluster)).await?,
        status: etcd.get_prefix(&keys::status_all(cluster)).await?,
        attrs: etcd.get_prefix(&keys::attributes_all(cluster)).await?,
    };
    let (out, left_out) = assemble(cluster, &read);
    for l in left_out {
        if super::first_report(&l.key, l.revision) {
            if l.expected {
                tracing::info!(key = %l.key, why = %l.why, "left out of the container instances");
            } else {
                tracing::warn!(key = %l.key, why = %l.why, "left out of the container instances");
            }
        }
    }
    Ok(out)
}

/// The keys of one cluster's instances, as read.
#[derive(Debug, Default)]
pub struct Read {
    pub ledgers: Vec<super::etcd::Kv>,
    pub regs: Vec<super::etcd::Kv>,
    pub alive: Vec<super::etcd::Kv>,
    pub status: Vec<super::etcd::Kv>,
    pub attrs: Vec<super::etcd::Kv>,
}

/// A key [`assemble`] left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub key: String,
    pub revision: i64,
    pub why: String,
    /// Normal for a moment (a status serve created before the agent registered).
    pub expected: bool,
}

/// The instances `read` holds, and what was left out: a registration over
/// [`REGISTRATION_MAX`], that does not decode, whose `id` is not its key's, without a
/// status or with one that is none of the three, or with a ledger that does not decode
/// (the instance); a status without a registration; a custom attribute whose name or
/// value ECS would not take (the attribute). An instance's id is its key's, never its
/// value's.
pub fn assemble(cluster: &str, read: &Read) -> (Vec<Instance>, Vec<LeftOut>) {
    let mut left = Vec::new();
    let mut leave = |kv: &super::etcd::Kv, why: String| {
        left.push(LeftOut {
            key: kv.key.clone(),
            revision: kv.mod_revision,
            why,
            expected: false,
        })
    };
    let find = |kvs: &[super::etcd::Kv], key: &str| kvs.iter().find(|kv| kv.key == key).cloned();
    let regs_prefix = keys::instances(cluster);
    let mut out = Vec::new();
    for kv in &read.regs {
        let id = &kv.key[regs_prefix.len()..];
        let mut reg = match registration(id, &kv.value) {
            Ok(r) => r,
            Err(why) => {
                leave(kv, why);
                continue;
            }
        };
        reg.ec2_instance_id = Some(reg.ec2_instance_id());
        let mut version = kv.mod_revision;
        // serve creates the status before the box registers (the agent itself on a plain
        // etcd): a registration without one, or a status that is none of the three, is
        // not taken for ACTIVE.
        let status_key = keys::status(cluster, id);
        let Some(st) = find(&read.status, &status_key) else {
            leave(
                kv,
                format!(
                    "instance {id} is registered without a status: set it (`etcdctl put \
                     {status_key} ACTIVE`, DRAINING or INACTIVE)"
                ),
            );
            continue;
        };
        let Some(status) = std::str::from_utf8(&st.value).ok().and_then(Status::parse) else {
            leave(
                &st,
                format!(
                    "{:?} is not ACTIVE, DRAINING or INACTIVE: set one with etcdctl put",
                    String::from_utf8_lossy(&st.value[..st.value.len().min(64)])
                ),
            );
            continue;
        };
        version = version.max(st.mod_revision);
        let live = find(&read.alive, &keys::alive(cluster, id));
        if let Some(a) = &live {
            version = version.max(a.mod_revision);
        }
        let ledger_key = keys::ledger(cluster, id);
        let (ledger, ledger_revision) = match find(&read.ledgers, &ledger_key) {
            Some(l) => match super::records::decode(&l.key, &l.value) {
                Ok(ledger) => {
                    version = version.max(l.mod_revision);
                    (ledger, l.mod_revision)
                }
                Err(e) => {
                    leave(
                        &l,
                        format!("instance {id}'s ledger does not decode: {}", e.why),
                    );
                    continue;
                }
            },
            None => Default::default(),
        };
        let prefix = keys::attributes(cluster, id);
        let mut custom = BTreeMap::new();
        for a in read.attrs.iter().filter(|a| a.key.starts_with(&prefix)) {
            let name = &a.key[prefix.len()..];
            let value = match custom_attribute(name, &a.value) {
                Ok(v) => v,
                Err(why) => {
                    leave(a, why);
                    continue;
                }
            };
            version = version.max(a.mod_revision);
            custom.insert(name.to_string(), value);
        }
        out.push(Instance {
            ledger,
            ledger_revision,
            cluster: cluster.into(),
            status,
            status_revision: st.mod_revision,
            connected: live.is_some(),
            custom,
            version,
            reg,
        });
    }
    let status_prefix = keys::status_all(cluster);
    for st in &read.status {
        let id = &st.key[status_prefix.len()..];
        if find(&read.regs, &keys::instance(cluster, id)).is_none() {
            left.push(LeftOut {
                key: st.key.clone(),
                revision: st.mod_revision,
                why: format!(
                    "no registration of instance {id} (yet: serve creates a box's status \
                     before its agent registers)"
                ),
                expected: true,
            });
        }
    }
    (out, left)
}

/// Instance `id`'s registration as stored under its key, or why a reader leaves it out
/// (and serve's port for boxes refuses it, `super::admission`): over
/// [`REGISTRATION_MAX`], not a registration, or naming another instance than its key.
pub fn registration(id: &str, raw: &[u8]) -> Result<Registration, String> {
    if raw.len() > REGISTRATION_MAX {
        return Err(format!(
            "a registration of {} bytes: over {REGISTRATION_MAX}",
            raw.len()
        ));
    }
    let reg = serde_json::from_slice::<Registration>(raw)
        .map_err(|e| format!("not a container instance registration: {e}"))?;
    if reg.id != id {
        return Err(format!(
            "the registration names instance {:?}, its key {id:?}",
            reg.id
        ));
    }
    Ok(reg)
}

/// A stored custom attribute as ECS allows it (PutAttributes' rules), or why not (a
/// reader leaves it out, serve's port for boxes refuses it).
pub fn custom_attribute(name: &str, raw: &[u8]) -> Result<Option<String>, String> {
    if !attribute_name_ok(name) {
        return Err(format!(
            "attribute name {:?}: not 1 to 128 letters, numbers, hyphens, underscores, \
             slashes, back slashes or periods",
            name.chars().take(160).collect::<String>()
        ));
    }
    if raw.len() > 2 * ATTRIBUTE_MAX + 2 {
        return Err(format!(
            "a value of {} bytes: over {ATTRIBUTE_MAX}",
            raw.len()
        ));
    }
    let value = attribute_value(raw);
    match value.as_deref() {
        Some(v) if !attribute_value_ok(v) => Err(format!(
            "value {:?} ({} bytes): not 1 to {ATTRIBUTE_MAX} letters, numbers, hyphens, underscores, \
             periods, at signs, slashes, back slashes, colons or spaces, not starting or \
             ending with a space",
            v.chars().take(160).collect::<String>(),
            v.len()
        )),
        _ => Ok(value),
    }
}

/// The longest attribute name, and value. Ref: API_Attribute.
pub const ATTRIBUTE_MAX: usize = 128;

/// An attribute's name as ECS allows it. Ref: API_Attribute (`name`: up to 128 letters,
/// numbers, hyphens, underscores, forward and back slashes, periods).
pub fn attribute_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= ATTRIBUTE_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/\\.".contains(c))
}

/// An attribute's value as ECS allows it. Ref: API_Attribute (`value`: up to 128 letters,
/// numbers, hyphens, underscores, periods, at signs, forward and back slashes, colons,
/// spaces, not starting or ending with a space).
pub fn attribute_value_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= ATTRIBUTE_MAX
        && !v.starts_with(' ')
        && !v.ends_with(' ')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@/\\: ".contains(c))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::etcd::Kv;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    fn kv(key: String, value: &[u8], rev: i64) -> Kv {
        Kv {
            key,
            value: value.to_vec(),
            mod_revision: rev,
            create_revision: rev,
            lease: 0,
        }
    }

    fn reg(id: &str) -> Vec<u8> {
        let mut r = Registration::of_this_box(id, 1);
        r.hostname = format!("box-{id}");
        serde_json::to_vec(&r).unwrap()
    }

    /// Box b's keys, written with its own etcd rights; box a's are what its agent wrote.
    fn read(b_reg: Vec<u8>, b_status: &[u8]) -> Read {
        Read {
            regs: vec![
                kv(instance("c", A), &reg(A), 10),
                kv(instance("c", B), &b_reg, 11),
            ],
            status: vec![
                kv(keys::status("c", A), b"ACTIVE", 5),
                kv(keys::status("c", B), b_status, 6),
            ],
            alive: vec![kv(keys::alive("c", A), b"box-a", 12)],
            attrs: vec![kv(keys::attribute("c", A, "zone"), b"\"lab\"", 13)],
            ledgers: Vec::new(),
        }
    }

    fn instance(c: &str, id: &str) -> String {
        keys::instance(c, id)
    }

    fn ids(out: &[Instance]) -> Vec<&str> {
        out.iter().map(|i| i.reg.id.as_str()).collect()
    }

    #[test]
    fn well_formed_instances_are_assembled_with_their_ids_from_their_keys() {
        let (out, left) = assemble("c", &read(reg(B), b"DRAINING"));
        assert_eq!(ids(&out), [A, B]);
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(out[0].custom["zone"].as_deref(), Some("lab"));
        assert!(out[0].connected && !out[1].connected);
        assert_eq!(out[1].status, Status::Draining);
        assert_eq!(out[0].version, 13);
    }

    /// issue 73: one box's garbled keys leave that box out, and only it; the others are
    /// listed as before (today's load failed for the whole cluster).
    #[test]
    fn a_box_s_garbled_or_oversized_keys_leave_out_that_box_only() {
        let mut over = Registration::of_this_box(B, 1);
        over.hostname = "x".repeat(REGISTRATION_MAX);
        let cases: Vec<(&str, Vec<u8>, &[u8], &str)> = vec![
            (
                "garbled registration",
                b"{not json".to_vec(),
                b"ACTIVE",
                "registration",
            ),
            (
                "registration of A's id",
                reg(A),
                b"ACTIVE",
                "names instance",
            ),
            (
                "oversized registration",
                serde_json::to_vec(&over).unwrap(),
                b"ACTIVE",
                "bytes: over",
            ),
            ("garbled status", reg(B), b"ACTIVE\xff!", "is not ACTIVE"),
            ("empty status", reg(B), b"", "is not ACTIVE"),
        ];
        for (what, b_reg, b_status, why) in cases {
            let (out, left) = assemble("c", &read(b_reg, b_status));
            assert_eq!(ids(&out), [A], "{what}");
            assert_eq!(out[0].reg.hostname, format!("box-{A}"), "{what}");
            assert_eq!(left.len(), 1, "{what}: {left:?}");
            assert!(left[0].key.ends_with(B), "{what}: {left:?}");
            assert!(left[0].why.contains(why), "{what}: {left:?}");
            assert!(!left[0].expected, "{what}");
        }
        // A registration without a status, and a status without a registration.
        let mut r = read(reg(B), b"ACTIVE");
        r.status.retain(|s| !s.key.ends_with(B));
        r.status.push(kv(keys::status("c", "feed"), b"ACTIVE", 7));
        let (out, left) = assemble("c", &r);
        assert_eq!(ids(&out), [A]);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].why.contains("without a status") && !left[0].expected);
        assert!(left[1].key.ends_with("/feed") && left[1].expected);
        // A ledger that does not decode leaves its instance out.
        let mut r = read(reg(B), b"ACTIVE");
        r.ledgers.push(kv(keys::ledger("c", B), b"[", 8));
        let (out, left) = assemble("c", &r);
        assert_eq!(ids(&out), [A]);
        assert!(left[0].key.contains("/ledger/"), "{left:?}");
    }

    #[test]
    fn attributes_ecs_would_not_take_are_left_out_alone() {
        let mut r = read(reg(B), b"ACTIVE");
        let long = format!("\"{}\"", "v".repeat(ATTRIBUTE_MAX + 1));
        r.attrs = vec![
            kv(keys::attribute("c", B, "ok"), b"\"fine value\"", 20),
            kv(keys::attribute("c", B, "none"), b"null", 21),
            kv(keys::attribute("c", B, "long"), long.as_bytes(), 22),
            kv(keys::attribute("c", B, "bad"), b"\"a;rm -rf\"", 23),
            kv(keys::attribute("c", B, "raw"), &vec![b'x'; 10_000], 24),
            kv(
                keys::attribute("c", B, &"n".repeat(ATTRIBUTE_MAX + 1)),
                b"\"v\"",
                25,
            ),
            kv(keys::attribute("c", B, "sp ace"), b"\"v\"", 26),
        ];
        let (out, left) = assemble("c", &r);
        assert_eq!(ids(&out), [A, B]);
        let b = &out[1];
        assert_eq!(
            b.custom.keys().map(String::as_str).collect::<Vec<_>>(),
            ["none", "ok"]
        );
        assert_eq!(left.len(), 5, "{left:?}");
        // The version counts only what was taken.
        assert_eq!(b.version, 21);
    }
}
