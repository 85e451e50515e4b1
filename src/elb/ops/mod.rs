//! The ELBv2 operations this host answers, each reading its members from the form
//! (`query::Params`) and writing its result shape (`query::Xml`), with ELB's defaults,
//! bounds and error codes (the botocore model's documentation of each member, and
//! API_CreateTargetGroup / API_CreateLoadBalancer / API_CreateListener). Here the table
//! of operations and their dispatch; each resource's operations in a file of their own.

use super::checks::{
    ArnKind, actions, arn_form, group, lb, page, tags, validation, write_attributes,
};
use super::error::{ElbError, ElbResult};
use super::model::{HealthCheck, LbType, Listener, LoadBalancer, Tag, Target, TargetGroup};
use super::query::{Params, Xml};
use super::{Elb, Health, State, random_hex, setting_ops};
use std::time::Instant;

mod listeners;
mod load_balancers;
mod tags;
mod target_groups;
mod targets;

use listeners::*;
use load_balancers::*;
use tags::*;
use target_groups::*;
use targets::*;

pub use target_groups::code_matches;
pub(in crate::elb) use targets::same;

/// The operations, in the order docs/load-balancing.md lists them, with what each does here.
pub const OPERATIONS: &[(&str, &str)] = &[
    (
        "CreateLoadBalancer",
        "`application` and `network`; `Subnets`/`SubnetMappings`, `SecurityGroups`, `IpAddressType` and `Tags` kept (subnets are not checked: no VPC here); `gateway` refused",
    ),
    (
        "DescribeLoadBalancers",
        "by `LoadBalancerArns` or `Names`; `Marker`/`PageSize`",
    ),
    (
        "DeleteLoadBalancer",
        "its listeners too; a load balancer that does not exist is a success, as on AWS",
    ),
    (
        "CreateTargetGroup",
        "target types `ip` and `instance`, protocols HTTP and TCP; every health-check member with ELB's defaults and bounds",
    ),
    (
        "DescribeTargetGroups",
        "by `TargetGroupArns`, `Names` or `LoadBalancerArn`; `Marker`/`PageSize`",
    ),
    ("ModifyTargetGroup", "every health-check member"),
    (
        "DeleteTargetGroup",
        "refused (ResourceInUse) while a listener forwards to it",
    ),
    (
        "DescribeTargetGroupAttributes",
        "every attribute ELB lists for the group's protocol, with ELB's defaults",
    ),
    (
        "ModifyTargetGroupAttributes",
        "`deregistration_delay.timeout_seconds` (0-3600), `stickiness.*` (`lb_cookie`, `app_cookie`, `source_ip`), `slow_start.duration_seconds`, `load_balancing.algorithm.*`, `proxy_protocol_v2.enabled`, `target_group_health.unhealthy_state_routing.*`, `target_health_state.unhealthy.connection_termination.enabled` and `deregistration_delay.connection_termination.enabled` applied; slow start with `least_outstanding_requests` or `weighted_random` refused (InvalidConfigurationRequest, as ELB); `preserve_client_ip.enabled`, `target_group_health.dns_failover.*` and `target_health_state.unhealthy.draining_interval_seconds` stored and returned, not applied (said in serve's log: \"Target group attributes\"); the others stored and returned",
    ),
    ("RegisterTargets", "`Id` (an IP address for `ip`), `Port`"),
    (
        "DeregisterTargets",
        "a target of a group in use drains for the deregistration delay",
    ),
    (
        "DescribeTargetHealth",
        "initial, healthy, unhealthy, unused, draining with ELB's reason codes; `Include` `AnomalyDetection` (or `All`): each target's `AnomalyDetection` in HTTP groups, mitigated in `weighted_random` groups with anomaly mitigation (\"Routing algorithms\")",
    ),
    (
        "CreateListener",
        "HTTP on application, TCP on network load balancers; default actions `forward` (one target group or `ForwardConfig` with weights), `fixed-response`, `redirect` (application); authenticate actions refused (HTTPS only); `SslPolicy`, `Certificates`, `AlpnPolicy` and `MutualAuthentication` refused (UnsupportedProtocol: HTTPS and TLS listeners only), as ModifyListener refuses them",
    ),
    (
        "DescribeListeners",
        "by `LoadBalancerArn` or `ListenerArns`",
    ),
    (
        "ModifyListener",
        "`Port`, `Protocol` (HTTP or TCP as the load balancer's type), `DefaultActions`; TLS members refused",
    ),
    ("DeleteListener", "its rules too"),
    (
        "CreateRule",
        "HTTP listeners; conditions `host-header`, `path-pattern`, `http-header`, `query-string`, `http-request-method`, `source-ip` (`Values` or the `*Config` forms; `RegexValues` and `Transforms` refused); the listener's actions; applied to traffic",
    ),
    (
        "DescribeRules",
        "by `ListenerArn` (by priority, then the default rule: `IsDefault`, priority `default`) or `RuleArns`; `Marker`/`PageSize`",
    ),
    (
        "ModifyRule",
        "conditions and actions; the default rule's actions are its listener's default actions",
    ),
    (
        "DeleteRule",
        "the default rule cannot be deleted (OperationNotPermitted)",
    ),
    (
        "SetRulePriorities",
        "all or nothing; PriorityInUse when two rules of a listener would share one",
    ),
    (
        "DescribeLoadBalancerAttributes",
        "every attribute ELB lists for the load balancer's type, with ELB's defaults",
    ),
    (
        "ModifyLoadBalancerAttributes",
        "`deletion_protection.enabled` applied (DeleteLoadBalancer is then OperationNotPermitted); `idle_timeout.timeout_seconds`, `client_keep_alive.seconds` and the `routing.http.*` header attributes (`xff_header_processing.mode`, `xff_client_port.enabled`, `preserve_host_header.enabled`, `drop_invalid_header_fields.enabled`) and `routing.http.desync_mitigation_mode` applied (\"HTTP listeners\"); values checked as ELB's API reference lists them (ValidationError); access and connection logs refused (no S3 here); the others (zonal shift, WAF fail-open, TLS headers, IPv6, cross-zone, HTTP/2, DNS client routing) stored and returned, not applied (said in serve's log when set to other than their default: \"load balancer attribute stored and returned, not applied here\")",
    ),
    (
        "SetSecurityGroups",
        "kept and returned, not applied (no VPC security groups here); a network load balancer created without security groups, or left with none, refused (InvalidConfigurationRequest, as ELB); `EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic` kept (network load balancers)",
    ),
    (
        "SetSubnets",
        "`Subnets`/`SubnetMappings` kept as the load balancer's zones (subnets are not checked: no VPC here); `IpAddressType` as SetIpAddressType; `EnablePrefixForIpv6SourceNat` `on` refused (UDP listeners only)",
    ),
    (
        "SetIpAddressType",
        "`ipv4`, `dualstack`, `dualstack-without-public-ipv4` (application only) kept and returned, not applied (the listeners answer at one IPv4 address)",
    ),
    (
        "DescribeCapacityReservation",
        "no capacity is reserved on one box: no `MinimumLoadBalancerCapacity`, no zone state (as for a load balancer without a reservation)",
    ),
    (
        "DescribeListenerAttributes",
        "TCP listeners: `tcp.idle_timeout.seconds` (350); HTTP listeners: `routing.http.response.server.enabled` (true) and the `routing.http.response.*.header_value` headers (none)",
    ),
    (
        "ModifyListenerAttributes",
        "the keys of the listener's protocol, stored and returned, not applied (the proxy's idle timeout and headers are not changed by them); another protocol's key refused (InvalidConfigurationRequest), an unknown one (ValidationError); `tcp.idle_timeout.seconds` 60-6000",
    ),
    (
        "AddTags",
        "load balancers, target groups, listeners and rules, by ARN; at most 50 tags a resource",
    ),
    ("RemoveTags", ""),
    ("DescribeTags", "up to 20 resources"),
];

/// Runs ELBv2 action `op` with the request's members.
pub fn call(elb: &Elb, op: &str, p: &Params) -> ElbResult<Xml> {
    let out = dispatch(elb, op, p);
    if out.is_ok() && !op.starts_with("Describe") {
        elb.changed();
    }
    out
}

fn dispatch(elb: &Elb, op: &str, p: &Params) -> ElbResult<Xml> {
    match op {
        "CreateLoadBalancer" => elb.write(|s| create_load_balancer(elb, s, p)),
        "DescribeLoadBalancers" => elb.with(|s| describe_load_balancers(s, p)),
        "DeleteLoadBalancer" => elb.write(|s| delete_load_balancer(s, p)),
        "CreateTargetGroup" => elb.write(|s| create_target_group(elb, s, p)),
        "DescribeTargetGroups" => elb.with(|s| describe_target_groups(s, p)),
        "ModifyTargetGroup" => elb.write(|s| modify_target_group(s, p)),
        "DeleteTargetGroup" => elb.write(|s| delete_target_group(s, p)),
        "DescribeTargetGroupAttributes" => elb.with(|s| describe_attributes(s, p)),
        "ModifyTargetGroupAttributes" => elb.write(|s| modify_attributes(s, p)),
        "RegisterTargets" => elb.write(|s| register_targets(s, p)),
        "DeregisterTargets" => elb.write(|s| deregister_targets(s, p)),
        "DescribeTargetHealth" => elb.with(|s| describe_target_health(s, p)),
        "CreateListener" => elb.write(|s| create_listener(elb, s, p)),
        "DescribeListeners" => elb.with(|s| describe_listeners(s, p)),
        "ModifyListener" => elb.write(|s| super::rule_ops::modify_listener(s, p)),
        "DeleteListener" => elb.write(|s| delete_listener(s, p)),
        "CreateRule" => elb.write(|s| super::rule_ops::create_rule(elb, s, p)),
        "DescribeRules" => elb.with(|s| super::rule_ops::describe_rules(s, p)),
        "ModifyRule" => elb.write(|s| super::rule_ops::modify_rule(s, p)),
        "DeleteRule" => elb.write(|s| super::rule_ops::delete_rule(s, p)),
        "SetRulePriorities" => elb.write(|s| super::rule_ops::set_rule_priorities(s, p)),
        "DescribeLoadBalancerAttributes" => elb.with(|s| describe_lb_attributes(s, p)),
        "ModifyLoadBalancerAttributes" => elb.write(|s| modify_lb_attributes(s, p)),
        "SetSecurityGroups" => elb.write(|s| setting_ops::set_security_groups(s, p)),
        "SetSubnets" => elb.write(|s| setting_ops::set_subnets(s, p)),
        "SetIpAddressType" => elb.write(|s| setting_ops::set_ip_address_type(s, p)),
        "DescribeCapacityReservation" => {
            elb.with(|s| setting_ops::describe_capacity_reservation(s, p))
        }
        "DescribeListenerAttributes" => {
            elb.with(|s| setting_ops::describe_listener_attributes(s, p))
        }
        "ModifyListenerAttributes" => elb.write(|s| setting_ops::modify_listener_attributes(s, p)),
        "AddTags" => elb.write(|s| add_tags(s, p)),
        "RemoveTags" => elb.write(|s| remove_tags(s, p)),
        "DescribeTags" => elb.with(|s| describe_tags(s, p)),
        _ => Err(ElbError::InvalidAction(format!(
            "{op} is not an Elastic Load Balancing v2 action served by minifargate (it serves {}; see docs/load-balancing.md)",
            OPERATIONS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// ELB's rule for load balancer and target group names: 1-32 alphanumerics or hyphens,
/// not beginning or ending with a hyphen.
fn check_name(what: &str, name: &str) -> ElbResult<()> {
    if name.is_empty() || name.len() > 32 {
        return Err(validation(format!(
            "{what} name '{name}' cannot be longer than '32' characters"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(validation(format!(
            "{what} name '{name}' can only contain characters that are alphanumeric characters or hyphens(-)"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(validation(format!(
            "{what} name '{name}' cannot begin or end with '-' character"
        )));
    }
    Ok(())
}

pub(in crate::elb) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn save_resource(s: &State, arn: &str) -> ElbResult<()> {
    if let Some(l) = s.lbs.get(arn) {
        s.save_lb(l)
    } else if let Some(g) = s.groups.get(arn) {
        s.save_group(g)
    } else if let Some(l) = s.listeners.get(arn) {
        s.save_listener(l)
    } else if let Some(r) = s.rules.get(arn) {
        s.save_rule(r)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_codes_are_single_lists_or_ranges_within_bounds() {
        assert!(check_codes("200", 499).is_ok());
        assert!(check_codes("200,202", 499).is_ok());
        assert!(check_codes("200-299", 499).is_ok());
        assert!(check_codes("200-599", 499).is_err());
        assert!(check_codes("199", 499).is_err());
        assert!(check_codes("abc", 499).is_err());
        assert!(code_matches("200,202", 202));
        assert!(code_matches("200-399", 302));
        assert!(!code_matches("200", 503));
    }

    #[test]
    fn health_check_bounds_are_elb_s() {
        // The AWS CLI checks the model's minimums and maximums itself; SDKs without
        // parameter validation reach these.
        let base = HealthCheck {
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            enabled: true,
            path: None,
            interval: 30,
            timeout: 6,
            healthy: 5,
            unhealthy: 2,
            matcher: None,
        };
        for (k, v) in [
            ("HealthCheckIntervalSeconds", "4"),
            ("HealthCheckIntervalSeconds", "301"),
            ("HealthCheckTimeoutSeconds", "1"),
            ("HealthyThresholdCount", "11"),
            ("UnhealthyThresholdCount", "1"),
            ("HealthCheckPort", "0"),
            ("HealthCheckPath", "health"),
        ] {
            let p = Params::of(&[(k, v)]);
            assert!(
                matches!(
                    health_check(&p, "HTTP", &base),
                    Err(ElbError::Validation(_))
                ),
                "{k}={v}"
            );
        }
        let h = health_check(&Params::of(&[]), "HTTP", &base).unwrap();
        assert_eq!(h.path.as_deref(), Some("/"));
        assert_eq!(h.matcher.as_deref(), Some("200"));
        let tcp = HealthCheck {
            protocol: "TCP".into(),
            timeout: 10,
            ..base
        };
        let h = health_check(&Params::of(&[]), "TCP", &tcp).unwrap();
        assert_eq!((h.path, h.matcher), (None, None));
        let h = health_check(&Params::of(&[("HealthCheckProtocol", "HTTP")]), "TCP", &tcp).unwrap();
        assert_eq!(h.matcher.as_deref(), Some("200-399"));
    }

    #[test]
    fn load_balancing_md_lists_the_operations() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/load-balancing.md")).unwrap();
        let mut want = String::from("| Operation | Notes |\n|---|---|\n");
        for (name, notes) in OPERATIONS {
            want.push_str(&format!("| {name} | {notes} |\n"));
        }
        assert!(
            doc.contains(&want),
            "docs/load-balancing.md's table differs from OPERATIONS; it should be:\n{want}"
        );
    }

    #[test]
    fn names_follow_elb_s_rule() {
        assert!(check_name("Load balancer", "my-lb-1").is_ok());
        assert!(check_name("Load balancer", "-x").is_err());
        assert!(check_name("Load balancer", "a_b").is_err());
        assert!(check_name("Load balancer", &"a".repeat(33)).is_err());
    }
}
