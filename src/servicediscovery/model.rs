//! Cloud Map's resources as `serve` keeps and stores them (JSON, botocore's member names),
//! and their API shapes (`Namespace`, `Service`, `Instance`, `Operation`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceType {
    #[serde(rename = "DNS_PRIVATE")]
    DnsPrivate,
    #[serde(rename = "HTTP")]
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Namespace {
    pub id: String,
    pub arn: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: NamespaceType,
    pub description: Option<String>,
    pub create_date: f64,
    pub creator_request_id: Option<String>,
    /// DNS namespaces: the hosted zone's id and its SOA TTL.
    pub hosted_zone_id: Option<String>,
    pub soa_ttl: Option<i64>,
    /// The VPC given (kept: there is one network here).
    pub vpc: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Namespace {
    /// The `Namespace` (and `NamespaceSummary`) shape.
    pub fn to_api(&self, account: &str, service_count: usize) -> Value {
        let properties = match self.kind {
            NamespaceType::DnsPrivate => json!({
                "DnsProperties": {
                    "HostedZoneId": self.hosted_zone_id,
                    "SOA": {"TTL": self.soa_ttl.unwrap_or(DEFAULT_SOA_TTL)},
                },
                "HttpProperties": {"HttpName": self.name},
            }),
            NamespaceType::Http => json!({
                "DnsProperties": {},
                "HttpProperties": {"HttpName": self.name},
            }),
        };
        let mut v = json!({
            "Id": self.id,
            "Arn": self.arn,
            "ResourceOwner": account,
            "Name": self.name,
            "Type": self.kind,
            "ServiceCount": service_count,
            "Properties": properties,
            "CreateDate": self.create_date,
        });
        if let Some(d) = &self.description {
            v["Description"] = d.clone().into();
        }
        if let Some(c) = &self.creator_request_id {
            v["CreatorRequestId"] = c.clone().into();
        }
        v
    }
}

/// The SOA TTL of a DNS namespace created without `Properties` (Route 53's default for the
/// hosted zones Cloud Map creates).
pub const DEFAULT_SOA_TTL: i64 = 15;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "SRV")]
    Srv,
    #[serde(rename = "CNAME")]
    Cname,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingPolicy {
    #[serde(rename = "MULTIVALUE")]
    Multivalue,
    #[serde(rename = "WEIGHTED")]
    Weighted,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DnsRecord {
    #[serde(rename = "Type")]
    pub kind: RecordType,
    #[serde(rename = "TTL")]
    pub ttl: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_policy: Option<RoutingPolicy>,
    pub dns_records: Vec<DnsRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HealthCheckConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HealthCheckCustomConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub namespace_id: String,
    pub description: Option<String>,
    pub dns_config: Option<DnsConfig>,
    /// HTTP, DNS_HTTP or DNS.
    #[serde(rename = "Type")]
    pub kind: String,
    pub health_check_config: Option<HealthCheckConfig>,
    pub health_check_custom_config: Option<HealthCheckCustomConfig>,
    pub create_date: f64,
    pub creator_request_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Service {
    /// The `Service` (and, without `CreatorRequestId`, `ServiceSummary`) shape.
    pub fn to_api(&self, account: &str, instance_count: usize) -> Value {
        let mut v = json!({
            "Id": self.id,
            "Arn": self.arn,
            "ResourceOwner": account,
            "Name": self.name,
            "NamespaceId": self.namespace_id,
            "InstanceCount": instance_count,
            "Type": self.kind,
            "CreateDate": self.create_date,
            "CreatedByAccount": account,
        });
        if let Some(d) = &self.description {
            v["Description"] = d.clone().into();
        }
        if let Some(d) = &self.dns_config {
            let mut d = d.clone();
            d.namespace_id = Some(self.namespace_id.clone());
            v["DnsConfig"] = serde_json::to_value(d).unwrap_or_default();
        }
        if let Some(h) = &self.health_check_config {
            v["HealthCheckConfig"] = serde_json::to_value(h).unwrap_or_default();
        }
        if let Some(h) = &self.health_check_custom_config {
            v["HealthCheckCustomConfig"] = serde_json::to_value(h).unwrap_or_default();
        }
        if let Some(c) = &self.creator_request_id {
            v["CreatorRequestId"] = c.clone().into();
        }
        v
    }

    /// The routing policy (MULTIVALUE when not given).
    pub fn routing(&self) -> RoutingPolicy {
        self.dns_config
            .as_ref()
            .and_then(|d| d.routing_policy.clone())
            .unwrap_or(RoutingPolicy::Multivalue)
    }
}

/// An instance's health as Cloud Map reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    #[serde(rename = "HEALTHY")]
    Healthy,
    #[serde(rename = "UNHEALTHY")]
    Unhealthy,
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub service_id: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub creator_request_id: Option<String>,
    /// The custom health status (services with HealthCheckCustomConfig).
    pub custom_health: Option<Health>,
}

impl Instance {
    /// Its health in service `s`: the custom status with a custom health check, UNKNOWN
    /// without one (Route 53 health checks are not run here).
    pub fn health(&self, s: &Service) -> Health {
        match (&s.health_check_custom_config, self.custom_health) {
            (Some(_), Some(h)) => h,
            (Some(_), None) => Health::Healthy,
            (None, _) => Health::Unknown,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Operation {
    pub id: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub status: String,
    pub create_date: f64,
    pub update_date: f64,
    pub targets: BTreeMap<String, String>,
}

impl Operation {
    pub fn to_api(&self, account: &str) -> Value {
        json!({
            "Id": self.id,
            "OwnerAccount": account,
            "Type": self.kind,
            "Status": self.status,
            "CreateDate": self.create_date,
            "UpdateDate": self.update_date,
            "Targets": self.targets,
        })
    }
}
