//! The names of Cloud Map's DNS namespaces, as Route 53 answers them in the private hosted
//! zone Cloud Map keeps for each: `<service>.<namespace>` has an A record per instance's
//! `AWS_INSTANCE_IPV4` and an SRV record (`1 1 <AWS_INSTANCE_PORT>
//! <instance id>.<service>.<namespace>`, whose A record is there too) per instance, with
//! the service's TTLs; unhealthy instances (custom health) are left out. MULTIVALUE answers
//! up to eight healthy values, none when none is healthy; WEIGHTED one healthy value at
//! random, or one of all when none is healthy (Cloud Map's `DnsConfig.RoutingPolicy`). A
//! service without instances has no records: its name is NXDOMAIN, as every other name
//! of the zone that is not the zone itself.

use super::model::{
    Health, Instance, Namespace, NamespaceType, RecordType, RoutingPolicy, Service,
};
use crate::dns::{Data, Record, Source};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Most values a MULTIVALUE answer holds.
const MULTIVALUE_MAX: usize = 8;

pub fn source(
    namespaces: &BTreeMap<String, Namespace>,
    services: &BTreeMap<String, Service>,
    instances: &BTreeMap<(String, String), Instance>,
) -> Source {
    let mut out = Source::default();
    for n in namespaces.values() {
        if n.kind == NamespaceType::DnsPrivate {
            out.zones.push(n.name.clone());
        }
    }
    for s in services.values() {
        let (Some(ns), Some(dns)) = (namespaces.get(&s.namespace_id), &s.dns_config) else {
            continue;
        };
        if ns.kind != NamespaceType::DnsPrivate {
            continue;
        }
        let all: Vec<&Instance> = instances
            .range((s.id.clone(), String::new())..)
            .take_while(|((sid, _), _)| *sid == s.id)
            .map(|(_, i)| i)
            .collect();
        if all.is_empty() {
            continue;
        }
        let healthy: Vec<&Instance> = all
            .iter()
            .copied()
            .filter(|i| i.health(s) != Health::Unhealthy)
            .collect();
        let routing = s.routing();
        let chosen = match (&routing, healthy.is_empty()) {
            (RoutingPolicy::Weighted, true) => all,
            _ => healthy,
        };
        let name = format!("{}.{}", s.name, ns.name);
        let mut records = Vec::new();
        for r in &dns.dns_records {
            let ttl = u32::try_from(r.ttl).unwrap_or(u32::MAX);
            for i in &chosen {
                let ip = i
                    .attributes
                    .get("AWS_INSTANCE_IPV4")
                    .and_then(|v| v.parse::<Ipv4Addr>().ok());
                match r.kind {
                    RecordType::A => {
                        if let Some(ip) = ip {
                            records.push(Record {
                                data: Data::A(ip),
                                ttl,
                            });
                        }
                    }
                    RecordType::Srv => {
                        let Some(port) = i
                            .attributes
                            .get("AWS_INSTANCE_PORT")
                            .and_then(|p| p.parse::<u16>().ok())
                        else {
                            continue;
                        };
                        let host = format!("{}.{name}", i.id);
                        records.push(Record {
                            data: Data::Srv {
                                priority: 1,
                                weight: 1,
                                port,
                                target: host.clone(),
                            },
                            ttl,
                        });
                        if let Some(ip) = ip {
                            out.names.insert(
                                host,
                                vec![Record {
                                    data: Data::A(ip),
                                    ttl,
                                }],
                            );
                        }
                    }
                    // AAAA and CNAME records are kept but not answered here
                    // (docs/service-discovery.md).
                    RecordType::Aaaa | RecordType::Cname => {}
                }
            }
        }
        let limit = match routing {
            RoutingPolicy::Multivalue => MULTIVALUE_MAX,
            RoutingPolicy::Weighted => 1,
        };
        out.limits.insert(name.clone(), limit);
        out.names.insert(name, records);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicediscovery::model::{DnsConfig, DnsRecord, HealthCheckCustomConfig};

    fn ns() -> Namespace {
        Namespace {
            id: "ns-1".into(),
            arn: "arn".into(),
            name: "corp.local".into(),
            kind: NamespaceType::DnsPrivate,
            description: None,
            create_date: 0.0,
            creator_request_id: None,
            hosted_zone_id: None,
            soa_ttl: None,
            vpc: None,
            tags: vec![],
        }
    }

    fn svc(routing: RoutingPolicy, custom: bool) -> Service {
        Service {
            id: "srv-1".into(),
            arn: "arn".into(),
            name: "b".into(),
            namespace_id: "ns-1".into(),
            description: None,
            dns_config: Some(DnsConfig {
                namespace_id: None,
                routing_policy: Some(routing),
                dns_records: vec![
                    DnsRecord {
                        kind: RecordType::A,
                        ttl: 7,
                    },
                    DnsRecord {
                        kind: RecordType::Srv,
                        ttl: 9,
                    },
                ],
            }),
            kind: "DNS_HTTP".into(),
            health_check_config: None,
            health_check_custom_config: custom.then_some(HealthCheckCustomConfig {
                failure_threshold: None,
            }),
            create_date: 0.0,
            creator_request_id: None,
            tags: vec![],
        }
    }

    fn inst(id: &str, ip: &str, health: Option<Health>) -> ((String, String), Instance) {
        (
            ("srv-1".into(), id.into()),
            Instance {
                service_id: "srv-1".into(),
                id: id.into(),
                attributes: BTreeMap::from([
                    ("AWS_INSTANCE_IPV4".into(), ip.into()),
                    ("AWS_INSTANCE_PORT".into(), "8080".into()),
                ]),
                creator_request_id: None,
                custom_health: health,
            },
        )
    }

    #[test]
    fn healthy_instances_give_a_and_srv_records_with_the_service_s_ttls() {
        let nss = BTreeMap::from([("ns-1".to_string(), ns())]);
        let svcs = BTreeMap::from([("srv-1".to_string(), svc(RoutingPolicy::Multivalue, true))]);
        let insts = BTreeMap::from([
            inst("t1", "10.94.0.2", None),
            inst("t2", "10.94.0.3", Some(Health::Unhealthy)),
        ]);
        let src = source(&nss, &svcs, &insts);
        assert_eq!(src.zones, vec!["corp.local".to_string()]);
        let r = &src.names["b.corp.local"];
        assert_eq!(
            r[0],
            Record {
                data: Data::A("10.94.0.2".parse().unwrap()),
                ttl: 7
            }
        );
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            matches!(&r[1].data, Data::Srv { port: 8080, target, .. } if target == "t1.b.corp.local")
        );
        assert_eq!(r[1].ttl, 9);
        assert!(src.names.contains_key("t1.b.corp.local"));
        assert!(!src.names.contains_key("t2.b.corp.local"));
        assert_eq!(src.limits["b.corp.local"], 8);

        // None healthy: MULTIVALUE answers nothing (the name stays), WEIGHTED fails open.
        let insts = BTreeMap::from([inst("t2", "10.94.0.3", Some(Health::Unhealthy))]);
        assert!(source(&nss, &svcs, &insts).names["b.corp.local"].is_empty());
        let svcs = BTreeMap::from([("srv-1".to_string(), svc(RoutingPolicy::Weighted, true))]);
        let src = source(&nss, &svcs, &insts);
        assert_eq!(src.names["b.corp.local"].len(), 2);
        assert_eq!(src.limits["b.corp.local"], 1);
        // No instance: no name (NXDOMAIN under the zone).
        assert!(source(&nss, &svcs, &BTreeMap::new()).names.is_empty());
    }
}
