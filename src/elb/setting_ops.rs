//! The operations that change a load balancer after it is made (SetSecurityGroups,
//! SetSubnets, SetIpAddressType), describe its capacity reservation, and read and set a
//! listener's attributes (DescribeListenerAttributes, ModifyListenerAttributes), with
//! ELB's checks and error codes (the botocore model's documentation of each member).

use super::State;
use super::checks::{lb, listener, validation, write_attributes};
use super::error::{ElbError, ElbResult};
use super::model::{LbType, Listener};
use super::query::{Params, Xml};
use std::collections::BTreeMap;

/// `IpAddressType` `value` checked for a load balancer of type `kind`. Ref:
/// SetIpAddressType.IpAddressType: "[Application Load Balancers] The possible values are
/// ipv4 [...], dualstack [...], and dualstack-without-public-ipv4 [...]. [Network Load
/// Balancers and Gateway Load Balancers] The possible values are ipv4 [...] and dualstack".
pub(super) fn ip_address_type(kind: LbType, value: &str) -> ElbResult<()> {
    const ALL: [&str; 3] = ["ipv4", "dualstack", "dualstack-without-public-ipv4"];
    if !ALL.contains(&value) {
        return Err(validation(format!(
            "1 validation error detected: Value '{value}' at 'ipAddressType' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            ALL.join(", ")
        )));
    }
    if kind == LbType::Network && value == "dualstack-without-public-ipv4" {
        return Err(ElbError::InvalidConfigurationRequest(format!(
            "IP address type '{value}' is not supported on load balancers with type 'network': they take ipv4 or dualstack"
        )));
    }
    Ok(())
}

/// `Subnets` and the `SubnetId` of each `SubnetMappings` entry, in order. Subnets are not
/// checked (there is no VPC here): each is a zone of the answer (`LoadBalancer::zones`).
pub(super) fn subnets(p: &Params) -> ElbResult<Vec<String>> {
    let mut out = p.list("Subnets");
    for m in p.structs("SubnetMappings") {
        out.push(m.required("SubnetId")?.to_string());
    }
    Ok(out)
}

fn enum_of(p: &Params, member: &str, field: &str, allowed: &[&str]) -> ElbResult<Option<String>> {
    match p.str(member) {
        Some(v) if !allowed.contains(&v) => Err(validation(format!(
            "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ))),
        v => Ok(v.map(str::to_string)),
    }
}

pub(super) fn set_security_groups(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut lb = lb(s, p.required("LoadBalancerArn")?)?.clone();
    let groups = p.list("SecurityGroups");
    // An empty list is sent as `SecurityGroups=` (botocore's query serializer).
    if groups.is_empty() && p.str("SecurityGroups").is_none() {
        return Err(validation(
            "1 validation error detected: Value null at 'securityGroups' failed to satisfy constraint: Member must not be null",
        ));
    }
    let enforce = enum_of(
        p,
        "EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic",
        "enforceSecurityGroupInboundRulesOnPrivateLinkTraffic",
        &["on", "off"],
    )?;
    match lb.kind {
        LbType::Network => {
            // Ref: SetSecurityGroups: "You can't perform this operation on a Network Load
            // Balancer unless you specified a security group for the load balancer when you
            // created it."; network/load-balancer-security-groups.html: security groups
            // cannot all be removed from a Network Load Balancer that has them.
            if lb.security_groups.is_empty() {
                return Err(ElbError::InvalidConfigurationRequest(
                    "You can't set security groups on a Network Load Balancer that was created without any".into(),
                ));
            }
            if groups.is_empty() {
                return Err(ElbError::InvalidConfigurationRequest(
                    "You can't remove all security groups from a Network Load Balancer created with security groups".into(),
                ));
            }
            if enforce.is_some() {
                lb.enforce_private_link = enforce;
            }
        }
        LbType::Application => {
            // Ref: SetSecurityGroups.EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic:
            // "traffic sent to a Network Load Balancer through AWS PrivateLink".
            if enforce.is_some() {
                return Err(ElbError::InvalidConfigurationRequest(
                    "EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic applies to Network Load Balancers only".into(),
                ));
            }
        }
    }
    lb.security_groups = groups;
    s.save_lb(&lb)?;
    let mut x = Xml::new();
    x.strings("SecurityGroupIds", &lb.security_groups);
    if lb.kind == LbType::Network {
        x.leaf(
            "EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic",
            lb.enforce_private_link.as_deref().unwrap_or("on"),
        );
    }
    s.lbs.insert(lb.arn.clone(), lb);
    Ok(x)
}

pub(super) fn set_subnets(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut lb = lb(s, p.required("LoadBalancerArn")?)?.clone();
    let subnets = subnets(p)?;
    // Ref: SetSubnets.Subnets: "You must specify either subnets or subnet mappings."
    if subnets.is_empty() {
        return Err(validation(
            "You must specify either subnets or subnet mappings",
        ));
    }
    if let Some(t) = p.str("IpAddressType") {
        ip_address_type(lb.kind, t)?;
        lb.ip_address_type = t.to_string();
    }
    // Ref: SetSubnets.EnablePrefixForIpv6SourceNat: "[Network Load Balancers with UDP
    // listeners]"; no UDP listener is served here.
    if enum_of(
        p,
        "EnablePrefixForIpv6SourceNat",
        "enablePrefixForIpv6SourceNat",
        &["on", "off"],
    )?
    .as_deref()
        == Some("on")
    {
        return Err(ElbError::InvalidConfigurationRequest(
            "EnablePrefixForIpv6SourceNat is for UDP listeners, which minifargate does not serve"
                .into(),
        ));
    }
    lb.subnets = subnets;
    s.save_lb(&lb)?;
    let mut x = Xml::new();
    lb.write_zones(&mut x);
    x.leaf("IpAddressType", &lb.ip_address_type);
    s.lbs.insert(lb.arn.clone(), lb);
    Ok(x)
}

pub(super) fn set_ip_address_type(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut lb = lb(s, p.required("LoadBalancerArn")?)?.clone();
    let t = p.required("IpAddressType")?;
    ip_address_type(lb.kind, t)?;
    lb.ip_address_type = t.to_string();
    s.save_lb(&lb)?;
    s.lbs.insert(lb.arn.clone(), lb);
    let mut x = Xml::new();
    x.leaf("IpAddressType", t);
    Ok(x)
}

/// No capacity is reserved on this box: the answer has no `MinimumLoadBalancerCapacity`
/// and no zone's reservation state, as AWS answers for a load balancer without one.
pub(super) fn describe_capacity_reservation(s: &mut State, p: &Params) -> ElbResult<Xml> {
    lb(s, p.required("LoadBalancerArn")?)?;
    let mut x = Xml::new();
    x.list("CapacityReservationState", &[] as &[()], |_, _| {});
    Ok(x)
}

/// The attributes of a listener of protocol `protocol` with ELB's defaults (the model's
/// `ListenerAttribute.Key` documentation): `tcp.idle_timeout.seconds` (350) on TCP
/// listeners; the Server header (on) and the response headers (none) on HTTP listeners.
/// The mTLS/TLS header names are HTTPS listeners' (not served here).
fn listener_defaults(protocol: &str) -> &'static [(&'static str, &'static str)] {
    match protocol {
        "TCP" => &[("tcp.idle_timeout.seconds", "350")],
        "HTTP" => &[
            ("routing.http.response.server.enabled", "true"),
            (
                "routing.http.response.strict_transport_security.header_value",
                "",
            ),
            (
                "routing.http.response.access_control_allow_origin.header_value",
                "",
            ),
            (
                "routing.http.response.access_control_allow_methods.header_value",
                "",
            ),
            (
                "routing.http.response.access_control_allow_headers.header_value",
                "",
            ),
            (
                "routing.http.response.access_control_allow_credentials.header_value",
                "",
            ),
            (
                "routing.http.response.access_control_expose_headers.header_value",
                "",
            ),
            (
                "routing.http.response.access_control_max_age.header_value",
                "",
            ),
            (
                "routing.http.response.content_security_policy.header_value",
                "",
            ),
            (
                "routing.http.response.x_content_type_options.header_value",
                "",
            ),
            ("routing.http.response.x_frame_options.header_value", ""),
        ],
        _ => &[],
    }
}

/// A listener's attributes: the defaults of its protocol with those set over them.
pub fn listener_attributes(l: &Listener) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = listener_defaults(&l.protocol)
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(l.attributes.clone());
    out
}

pub(super) fn describe_listener_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let l = listener(s, p.required("ListenerArn")?)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &listener_attributes(l));
    Ok(x)
}

/// The keys the model documents for a listener of any protocol, and the mTLS/TLS header
/// names of HTTPS listeners (ListenerAttribute.Key).
fn known_key(key: &str) -> bool {
    key == "tcp.idle_timeout.seconds"
        || key.starts_with("routing.http.request.x_amzn_") && key.ends_with(".header_name")
        || listener_defaults("HTTP").iter().any(|(k, _)| *k == key)
}

pub(super) fn modify_listener_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut l = listener(s, p.required("ListenerArn")?)?.clone();
    let attrs = p.structs("Attributes");
    if attrs.is_empty() {
        return Err(validation("Attributes must not be empty"));
    }
    let defaults = listener_defaults(&l.protocol);
    for a in attrs {
        let key = a.required("Key")?;
        let value = a.str("Value").unwrap_or("");
        if !known_key(key) {
            return Err(validation(format!(
                "Listener attribute key '{key}' is not recognized"
            )));
        }
        if !defaults.iter().any(|(k, _)| *k == key) {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "Listener attribute key '{key}' is not supported on listeners with protocol '{}'",
                l.protocol
            )));
        }
        check_listener_attribute(key, value)?;
        l.attributes.insert(key.to_string(), value.to_string());
    }
    s.save_listener(&l)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &listener_attributes(&l));
    s.listeners.insert(l.arn.clone(), l);
    Ok(x)
}

/// Ref: ListenerAttribute.Key: "tcp.idle_timeout.seconds [...] The valid range is 60-6000
/// seconds"; `routing.http.response.server.enabled` is a boolean.
fn check_listener_attribute(key: &str, value: &str) -> ElbResult<()> {
    if key == "tcp.idle_timeout.seconds"
        && !value.parse::<u32>().is_ok_and(|n| (60..=6000).contains(&n))
    {
        return Err(validation(format!(
            "'{value}' is not a valid TCP idle timeout: it must be 60-6000 seconds"
        )));
    }
    if key.ends_with(".enabled") && !matches!(value, "true" | "false") {
        return Err(validation(format!(
            "'{value}' is not a valid value for the attribute '{key}': it must be true or false"
        )));
    }
    Ok(())
}
