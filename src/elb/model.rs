//! ELBv2's resources as this host keeps them (persisted as JSON rows, `crate::store::elb`)
//! and as the API writes them (the model's `LoadBalancer`, `TargetGroup`, `Listener`,
//! `Action` shapes).

use super::query::Xml;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// `application` or `network` (`gateway` is refused: no GENEVE here).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LbType {
    Application,
    Network,
}

impl LbType {
    pub fn as_str(self) -> &'static str {
        match self {
            LbType::Application => "application",
            LbType::Network => "network",
        }
    }

    /// The ARN's and the listener ARN's type segment.
    pub fn arn_segment(self) -> &'static str {
        match self {
            LbType::Application => "app",
            LbType::Network => "net",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    pub kind: LbType,
    pub scheme: String,
    pub dns_name: String,
    pub hosted_zone: String,
    pub created_ms: i64,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub ip_address_type: String,
    pub tags: Vec<Tag>,
    /// The attributes set by ModifyLoadBalancerAttributes (the others have ELB's
    /// defaults: `ops::load_balancers::lb_attributes`).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// `EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic` as SetSecurityGroups last set
    /// it (`on`/`off`; network load balancers with security groups only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_private_link: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    pub enabled: bool,
    /// HTTP health checks only.
    pub path: Option<String>,
    pub interval: i64,
    pub timeout: i64,
    pub healthy: i64,
    pub unhealthy: i64,
    /// HTTP health checks only (`Matcher.HttpCode`).
    pub matcher: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub protocol: String,
    pub port: u16,
    pub vpc_id: String,
    pub target_type: String,
    pub protocol_version: Option<String>,
    pub ip_address_type: String,
    pub health: HealthCheck,
    /// Every attribute with its value (defaults included), in key order.
    pub attributes: std::collections::BTreeMap<String, String>,
    pub targets: Vec<Target>,
    pub tags: Vec<Tag>,
    /// Each registered target's registration (`id:port` to a number from `registered`):
    /// another process's deregistration and registration again between two of serve's
    /// reads is a new number, so serve sees the target leave (`follow_registrations`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub registrations: std::collections::BTreeMap<String, u64>,
    /// How many registrations the group has had (never goes down).
    #[serde(default)]
    pub registered: u64,
}

impl TargetGroup {
    /// Target `t`'s registration number (0: registered before they were numbered).
    pub fn registration_of(&self, t: &Target) -> u64 {
        self.registrations
            .get(&registration_key(t))
            .copied()
            .unwrap_or(0)
    }

    /// Records a new registration of `t`.
    pub fn register(&mut self, t: &Target) {
        self.registered += 1;
        self.registrations
            .insert(registration_key(t), self.registered);
    }

    /// Forgets `t`'s registration.
    pub fn deregister(&mut self, t: &Target) {
        self.registrations.remove(&registration_key(t));
    }
}

/// A target as the key of its registration: its id and port (what ELB tells targets apart
/// by).
fn registration_key(t: &Target) -> String {
    format!("{}:{}", t.id, t.port)
}

/// A registered target: an IP address (target type `ip`) or an instance id (`instance`)
/// and the port it receives traffic on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Target {
    pub id: String,
    pub port: u16,
    pub availability_zone: Option<String>,
}

/// One target group of a forward action, with its weight.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeightedGroup {
    pub arn: String,
    pub weight: Option<i64>,
}

/// `ForwardConfig.TargetGroupStickinessConfig` as given (kept and returned, not applied).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupStickiness {
    pub enabled: bool,
    pub duration: Option<i64>,
}

/// A listener's (or rule's) action: `forward`, `fixed-response` or `redirect`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Action {
    pub kind: String,
    pub order: Option<i64>,
    /// `TargetGroupArn` as given (a forward to one group).
    pub target_group_arn: Option<String>,
    /// `ForwardConfig.TargetGroups` as given.
    pub forward: Option<Vec<WeightedGroup>>,
    #[serde(default)]
    pub stickiness: Option<GroupStickiness>,
    #[serde(default)]
    pub fixed_response: Option<super::rules::FixedResponse>,
    #[serde(default)]
    pub redirect: Option<super::rules::Redirect>,
}

impl Action {
    /// The target groups it forwards to.
    pub fn groups(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.target_group_arn.iter().map(String::as_str).collect();
        for g in self.forward.iter().flatten() {
            if !out.contains(&g.arn.as_str()) {
                out.push(&g.arn);
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listener {
    pub arn: String,
    pub load_balancer_arn: String,
    pub port: u16,
    pub protocol: String,
    pub default_actions: Vec<Action>,
    pub tags: Vec<Tag>,
    /// The attributes set by ModifyListenerAttributes (the others have ELB's defaults:
    /// `setting_ops::listener_attributes`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// ISO 8601 with milliseconds, as ELB writes `CreatedTime`.
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl LoadBalancer {
    /// The subnets its zones are listed by: those given, else `subnet-minifargate` (the
    /// listeners' address is written in each zone's `LoadBalancerAddresses`).
    fn zones(&self) -> Vec<String> {
        if self.subnets.is_empty() {
            vec!["subnet-minifargate".to_string()]
        } else {
            self.subnets.clone()
        }
    }

    /// `AvailabilityZones`: a zone of each subnet, the listeners' address in each.
    pub fn write_zones(&self, x: &mut Xml) {
        x.list("AvailabilityZones", &self.zones(), |x, s| {
            x.leaf("ZoneName", zone_of(s)).leaf("SubnetId", s).list(
                "LoadBalancerAddresses",
                &[address(self)],
                |x, a| {
                    x.leaf("IpAddress", a);
                },
            );
        });
    }

    /// The `LoadBalancer` shape; `state` is `provisioning` in CreateLoadBalancer's answer
    /// and `active` after, as AWS answers.
    pub fn write(&self, x: &mut Xml, state: &str) {
        x.leaf("LoadBalancerArn", &self.arn)
            .leaf("DNSName", &self.dns_name)
            .leaf("CanonicalHostedZoneId", &self.hosted_zone)
            .leaf("CreatedTime", iso(self.created_ms))
            .leaf("LoadBalancerName", &self.name)
            .leaf("Scheme", &self.scheme)
            .leaf("VpcId", &self.vpc_id)
            .node("State", |x| {
                x.leaf("Code", state);
            })
            .leaf("Type", self.kind.as_str());
        self.write_zones(x);
        if self.kind == LbType::Application || !self.security_groups.is_empty() {
            x.strings("SecurityGroups", &self.security_groups);
        }
        if self.kind == LbType::Network && !self.security_groups.is_empty() {
            // Ref: API_LoadBalancer: "Indicates whether to evaluate inbound security group
            // rules for traffic sent to a Network Load Balancer through AWS PrivateLink."
            // (on unless SetSecurityGroups turned it off).
            x.leaf(
                "EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic",
                self.enforce_private_link.as_deref().unwrap_or("on"),
            );
        }
        x.leaf("IpAddressType", &self.ip_address_type);
    }
}

/// The availability zone a subnet is said to be in: subnets are not checked here (there
/// is no VPC), so the n-th distinct subnet is in zone `a`, `b`, … of the region, by a
/// stable hash of its id.
pub fn zone_of(subnet: &str) -> String {
    let region = crate::config::get().region().to_string();
    let h = subnet
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    format!("{region}{}", (b'a' + (h % 3) as u8) as char)
}

impl TargetGroup {
    /// The `TargetGroup` shape; `lbs` are the load balancers whose listeners forward to it.
    pub fn write(&self, x: &mut Xml, lbs: &[String]) {
        let h = &self.health;
        x.leaf("TargetGroupArn", &self.arn)
            .leaf("TargetGroupName", &self.name)
            .leaf("Protocol", &self.protocol)
            .leaf("Port", self.port)
            .leaf("VpcId", &self.vpc_id)
            .leaf("HealthCheckProtocol", &h.protocol)
            .leaf("HealthCheckPort", &h.port)
            .leaf("HealthCheckEnabled", h.enabled)
            .leaf("HealthCheckIntervalSeconds", h.interval)
            .leaf("HealthCheckTimeoutSeconds", h.timeout)
            .leaf("HealthyThresholdCount", h.healthy)
            .leaf("UnhealthyThresholdCount", h.unhealthy)
            .opt("HealthCheckPath", h.path.as_ref());
        if let Some(m) = &h.matcher {
            x.node("Matcher", |x| {
                x.leaf("HttpCode", m);
            });
        }
        x.strings("LoadBalancerArns", lbs)
            .leaf("TargetType", &self.target_type)
            .opt("ProtocolVersion", self.protocol_version.as_ref())
            .leaf("IpAddressType", &self.ip_address_type);
    }
}

impl Action {
    pub fn write(&self, x: &mut Xml) {
        x.leaf("Type", &self.kind)
            .opt("TargetGroupArn", self.target_group_arn.as_ref())
            .opt("Order", self.order);
        if let Some(groups) = &self.forward {
            x.node("ForwardConfig", |x| {
                x.list("TargetGroups", groups, |x, g| {
                    x.leaf("TargetGroupArn", &g.arn).opt("Weight", g.weight);
                });
                if let Some(st) = &self.stickiness {
                    x.node("TargetGroupStickinessConfig", |x| {
                        x.leaf("Enabled", st.enabled)
                            .opt("DurationSeconds", st.duration);
                    });
                }
            });
        }
        if let Some(r) = &self.redirect {
            x.node("RedirectConfig", |x| r.write(x));
        }
        if let Some(f) = &self.fixed_response {
            x.node("FixedResponseConfig", |x| f.write(x));
        }
    }
}

impl Listener {
    pub fn write(&self, x: &mut Xml) {
        x.leaf("ListenerArn", &self.arn)
            .leaf("LoadBalancerArn", &self.load_balancer_arn)
            .leaf("Port", self.port)
            .leaf("Protocol", &self.protocol)
            .list("DefaultActions", &self.default_actions, |x, a| a.write(x));
    }
}

/// The address a load balancer's listeners listen on: its own address in
/// `MINIFARGATE_LB_SUBNET` (default 10.93.0.0/16), from its ARN's id (stable across
/// restarts, unique in practice, so several load balancers can each listen on port 80).
/// `serve` puts it on the task bridge (`super::names`). docs/load-balancing.md, "Where it
/// listens".
pub fn address(lb: &LoadBalancer) -> std::net::Ipv4Addr {
    address_in(&lb.arn, crate::config::get().lb_subnet)
}

/// [`address`] in `range`: a host address of it (neither the first nor the last).
pub fn address_in(arn: &str, range: netns::Subnet) -> std::net::Ipv4Addr {
    let id = arn.rsplit('/').next().unwrap_or("");
    let b = hex::decode(id).unwrap_or_default();
    let h = b.iter().take(8).fold(0u64, |h, x| (h << 8) | u64::from(*x));
    let size = 1u64 << (32 - u32::from(range.prefix()));
    let hosts = size.saturating_sub(2).max(1);
    let offset = 1 + (h % hosts) as u32;
    std::net::Ipv4Addr::from(u32::from(range.network()).wrapping_add(offset))
}

/// A listener's rule (not the default rule: that is the listener's default actions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    pub arn: String,
    pub listener_arn: String,
    pub priority: i64,
    pub conditions: Vec<super::rules::Condition>,
    pub actions: Vec<Action>,
    pub tags: Vec<Tag>,
}

impl Rule {
    /// The `Rule` shape.
    pub fn write(&self, x: &mut Xml) {
        x.leaf("RuleArn", &self.arn)
            .leaf("Priority", self.priority)
            .list("Conditions", &self.conditions, |x, c| c.write(x))
            .list("Actions", &self.actions, |x, a| a.write(x))
            .leaf("IsDefault", false);
    }
}

/// The default rule's `Rule` shape: priority `default`, no conditions, the listener's
/// default actions.
pub fn write_default(x: &mut Xml, listener: &str, actions: &[Action]) {
    x.leaf("RuleArn", super::rules::default_rule_arn(listener))
        .leaf("Priority", "default")
        .node("Conditions", |_| {})
        .list("Actions", actions, |x, a| a.write(x))
        .leaf("IsDefault", true);
}
