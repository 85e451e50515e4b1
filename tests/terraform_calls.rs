//! Root integration tests of the calls Terraform's AWS provider makes for its ELBv2 and
//! Cloud Map resources (`aws_lb`, `aws_lb_target_group`, `aws_lb_listener`,
//! `aws_lb_listener_rule`, `aws_lb_target_group_attachment`,
//! `aws_service_discovery_{private_dns,http}_namespace`, `aws_service_discovery_service`,
//! `aws_service_discovery_instance`), replayed with boto3 in the provider's order
//! (create, the Read after it, update, the Read again, delete) against a real `serve`;
//! and the AWS CLI's ELBv2 waiters (`aws elbv2 wait …`).

use crate::common;

use common::api::Api;
use common::elb::{Targets, elbv2};
use serde_json::{Value, json};

/// What both replays start with: the modules, the answer being built (`out`) and
/// `code(call, **members)`: the error code a call answers, None when it succeeds.
const PRELUDE: &str = r#"
import boto3, json, os, uuid
from botocore.exceptions import ClientError
out = {}
def code(f, **kw):
    try:
        f(**kw)
        return None
    except ClientError as e:
        return e.response["Error"]["Code"]
"#;

/// The provider's create → read → update → read → delete of an application load balancer
/// with a target group, a target attachment, an HTTP listener and a listener rule, and of
/// a network load balancer with a TCP listener (terraform-provider-aws
/// internal/service/elbv2/{load_balancer,target_group,target_group_attachment,listener,
/// listener_rule}.go: each resource's Create, Read, Update and Delete and the finders and
/// waiters they call).
#[test]
fn terraform_s_elbv2_calls_are_answered_as_aws_answers_them() {
    let api = Api::start();
    let v = api.boto3(
        &[
            PRELUDE,
            r#"
c = boto3.client("elbv2", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
def attrs(a):
    return {x["Key"]: x["Value"] for x in a}
tags = [{"Key": "Name", "Value": "tf"}]

# aws_lb: the name is free, create, wait for active, the attributes of its type, Read.
out["lb_free"] = code(c.describe_load_balancers, Names=["tf-alb"])
lb = c.create_load_balancer(Name="tf-alb", Type="application", Subnets=["subnet-a", "subnet-b"],
    SecurityGroups=["sg-1"], Tags=tags)["LoadBalancers"][0]
arn = lb["LoadBalancerArn"]
c.get_waiter("load_balancer_available").wait(LoadBalancerArns=[arn],
    WaiterConfig={"Delay": 1, "MaxAttempts": 5})
c.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[
    {"Key": "access_logs.s3.enabled", "Value": "false"},
    {"Key": "connection_logs.s3.enabled", "Value": "false"},
    {"Key": "client_keep_alive.seconds", "Value": "3600"},
    {"Key": "routing.http.desync_mitigation_mode", "Value": "defensive"},
    {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "false"},
    {"Key": "deletion_protection.enabled", "Value": "false"},
    {"Key": "routing.http2.enabled", "Value": "true"},
    {"Key": "routing.http.x_amzn_tls_version_and_cipher_suite.enabled", "Value": "false"},
    {"Key": "waf.fail_open.enabled", "Value": "false"},
    {"Key": "routing.http.xff_client_port.enabled", "Value": "false"},
    {"Key": "zonal_shift.config.enabled", "Value": "false"},
    {"Key": "idle_timeout.timeout_seconds", "Value": "60"},
    {"Key": "routing.http.preserve_host_header.enabled", "Value": "false"},
    {"Key": "routing.http.xff_header_processing.mode", "Value": "append"}])
def read_lb():
    l = c.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    a = attrs(c.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"])
    cr = c.describe_capacity_reservation(LoadBalancerArn=arn)
    t = c.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]
    return {"state": l["State"]["Code"], "sgs": sorted(l["SecurityGroups"]),
            "subnets": sorted(z["SubnetId"] for z in l["AvailabilityZones"]),
            "ip_type": l["IpAddressType"], "idle": a["idle_timeout.timeout_seconds"],
            "reserved": cr.get("MinimumLoadBalancerCapacity"),
            "zones_reserved": cr["CapacityReservationState"], "tags": t}
out["lb_created"] = read_lb()
# aws_lb update: an attribute, security groups, subnets, IP address type, wait, Read.
c.modify_load_balancer_attributes(LoadBalancerArn=arn,
    Attributes=[{"Key": "idle_timeout.timeout_seconds", "Value": "120"}])
sg = c.set_security_groups(LoadBalancerArn=arn, SecurityGroups=["sg-1", "sg-2"])
out["sg_answer"] = sorted(sg["SecurityGroupIds"])
sn = c.set_subnets(LoadBalancerArn=arn, Subnets=["subnet-a", "subnet-b", "subnet-c"])
out["subnets_answer"] = sorted(z["SubnetId"] for z in sn["AvailabilityZones"])
out["ip_answer"] = c.set_ip_address_type(LoadBalancerArn=arn, IpAddressType="dualstack")["IpAddressType"]
c.get_waiter("load_balancer_available").wait(LoadBalancerArns=[arn],
    WaiterConfig={"Delay": 1, "MaxAttempts": 5})
out["lb_updated"] = read_lb()

# aws_lb_target_group: the name is free, create, found, its attributes, Read, update.
out["tg_free"] = code(c.describe_target_groups, Names=["tf-tg"])
tg = c.create_target_group(Name="tf-tg", Port=8080, Protocol="HTTP", ProtocolVersion="HTTP1",
    VpcId="vpc-1", TargetType="ip", IpAddressType="ipv4", HealthCheckEnabled=True,
    HealthCheckPath="/", HealthCheckPort="traffic-port", HealthCheckProtocol="HTTP",
    HealthCheckIntervalSeconds=30, HealthCheckTimeoutSeconds=5, HealthyThresholdCount=5,
    UnhealthyThresholdCount=2, Matcher={"HttpCode": "200"}, Tags=tags)["TargetGroups"][0]
tga = tg["TargetGroupArn"]
c.describe_target_groups(TargetGroupArns=[tga])
c.modify_target_group_attributes(TargetGroupArn=tga, Attributes=[
    {"Key": "deregistration_delay.timeout_seconds", "Value": "300"},
    {"Key": "load_balancing.algorithm.type", "Value": "round_robin"},
    {"Key": "slow_start.duration_seconds", "Value": "0"},
    {"Key": "stickiness.enabled", "Value": "false"},
    {"Key": "stickiness.type", "Value": "lb_cookie"},
    {"Key": "stickiness.lb_cookie.duration_seconds", "Value": "86400"},
    {"Key": "load_balancing.cross_zone.enabled", "Value": "use_load_balancer_configuration"},
    {"Key": "target_group_health.dns_failover.minimum_healthy_targets.count", "Value": "1"},
    {"Key": "target_group_health.dns_failover.minimum_healthy_targets.percentage", "Value": "off"},
    {"Key": "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count", "Value": "1"},
    {"Key": "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
     "Value": "off"}])
c.describe_target_group_attributes(TargetGroupArn=tga)
c.describe_tags(ResourceArns=[tga])
c.modify_target_group(TargetGroupArn=tga, HealthCheckPath="/health")
out["tg_path"] = c.describe_target_groups(TargetGroupArns=[tga])["TargetGroups"][0]["HealthCheckPath"]

# aws_lb_target_group_attachment: register, Read (the one target), deregister, Read.
target = {"Id": "10.0.0.5", "Port": 8080}
c.register_targets(TargetGroupArn=tga, Targets=[target])
h = c.describe_target_health(TargetGroupArn=tga, Targets=[target])["TargetHealthDescriptions"]
out["attached"] = [(d["Target"]["Id"], d["TargetHealth"]["State"]) for d in h]

# aws_lb_listener: create, found, Read with its attributes, update, Read.
ls = c.create_listener(LoadBalancerArn=arn, Protocol="HTTP", Port=18080, Tags=tags,
    DefaultActions=[{"Type": "forward", "TargetGroupArn": tga, "Order": 1}])["Listeners"][0]
la = ls["ListenerArn"]
c.describe_listeners(ListenerArns=[la])
def read_listener():
    l = c.describe_listeners(ListenerArns=[la])["Listeners"][0]
    a = attrs(c.describe_listener_attributes(ListenerArn=la)["Attributes"])
    c.describe_tags(ResourceArns=[la])
    return {"port": l["Port"], "action": l["DefaultActions"][0]["Type"], "attributes": a}
out["listener_created"] = read_listener()
c.modify_listener(ListenerArn=la, Port=18081, Protocol="HTTP", DefaultActions=[{"Type":
    "fixed-response", "Order": 1, "FixedResponseConfig": {"StatusCode": "404",
    "ContentType": "text/plain", "MessageBody": "none"}}])
changed = c.modify_listener_attributes(ListenerArn=la, Attributes=[
    {"Key": "routing.http.response.server.enabled", "Value": "false"},
    {"Key": "routing.http.response.x_frame_options.header_value", "Value": "DENY"}])
out["listener_attrs_answer"] = attrs(changed["Attributes"])["routing.http.response.server.enabled"]
out["listener_updated"] = read_listener()
out["listener_bad_key"] = code(c.modify_listener_attributes, ListenerArn=la,
    Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "600"}])
out["listener_missing"] = code(c.describe_listener_attributes,
    ListenerArn=la.replace("listener/app/tf-alb/", "listener/app/tf-alb/0"))

# aws_lb_listener_rule: create, Read, priority and conditions updated, Read, delete.
r = c.create_rule(ListenerArn=la, Priority=10, Tags=tags,
    Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}}],
    Actions=[{"Type": "forward", "TargetGroupArn": tga, "Order": 1}])["Rules"][0]
ra = r["RuleArn"]
c.describe_rules(RuleArns=[ra])
c.describe_tags(ResourceArns=[ra])
c.set_rule_priorities(RulePriorities=[{"RuleArn": ra, "Priority": 20}])
c.modify_rule(RuleArn=ra,
    Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/v2/*"]}}],
    Actions=[{"Type": "forward", "TargetGroupArn": tga, "Order": 1}])
rr = c.describe_rules(RuleArns=[ra])["Rules"][0]
out["rule"] = [rr["Priority"], rr["Conditions"][0]["PathPatternConfig"]["Values"]]

# The deletes, in Terraform's order (dependents first).
c.delete_rule(RuleArn=ra)
c.delete_listener(ListenerArn=la)
c.deregister_targets(TargetGroupArn=tga, Targets=[target])
h = c.describe_target_health(TargetGroupArn=tga, Targets=[target])["TargetHealthDescriptions"]
out["detached"] = [d["TargetHealth"].get("Reason") for d in h]
c.delete_target_group(TargetGroupArn=tga)
c.delete_load_balancer(LoadBalancerArn=arn)
c.get_waiter("load_balancers_deleted").wait(LoadBalancerArns=[arn],
    WaiterConfig={"Delay": 1, "MaxAttempts": 5})

# aws_lb of type network and a TCP aws_lb_listener: its attributes and its listener's.
nlb = c.create_load_balancer(Name="tf-nlb", Type="network", Subnets=["subnet-a"],
    SecurityGroups=["sg-1"])["LoadBalancers"][0]["LoadBalancerArn"]
c.modify_load_balancer_attributes(LoadBalancerArn=nlb, Attributes=[
    {"Key": "access_logs.s3.enabled", "Value": "false"},
    {"Key": "dns_record.client_routing_policy", "Value": "any_availability_zone"},
    {"Key": "load_balancing.cross_zone.enabled", "Value": "false"},
    {"Key": "deletion_protection.enabled", "Value": "false"},
    {"Key": "zonal_shift.config.enabled", "Value": "false"}])
c.set_security_groups(LoadBalancerArn=nlb, SecurityGroups=["sg-1"],
    EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic="off")
out["nlb_enforce"] = c.describe_load_balancers(LoadBalancerArns=[nlb])["LoadBalancers"][0][
    "EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"]
out["nlb_no_sgs"] = code(c.set_security_groups, LoadBalancerArn=nlb, SecurityGroups=[])
ttg = c.create_target_group(Name="tf-tcp", Port=9000, Protocol="TCP", VpcId="vpc-1",
    TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
tl = c.create_listener(LoadBalancerArn=nlb, Protocol="TCP", Port=19000,
    DefaultActions=[{"Type": "forward", "TargetGroupArn": ttg}])["Listeners"][0]["ListenerArn"]
out["tcp_default"] = attrs(c.describe_listener_attributes(ListenerArn=tl)["Attributes"])
c.modify_listener_attributes(ListenerArn=tl,
    Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "600"}])
out["tcp_set"] = attrs(c.describe_listener_attributes(ListenerArn=tl)["Attributes"])
out["tcp_too_long"] = code(c.modify_listener_attributes, ListenerArn=tl,
    Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "6001"}])
out["nlb_ip_type"] = code(c.set_ip_address_type, LoadBalancerArn=nlb,
    IpAddressType="dualstack-without-public-ipv4")
c.delete_listener(ListenerArn=tl)
c.delete_target_group(TargetGroupArn=ttg)
c.delete_load_balancer(LoadBalancerArn=nlb)
print(json.dumps(out))
"#,
        ]
        .concat(),
    );
    assert_eq!(v["lb_free"], "LoadBalancerNotFound", "{v:#}");
    assert_eq!(
        v["lb_created"],
        json!({"state": "active", "sgs": ["sg-1"], "subnets": ["subnet-a", "subnet-b"],
               "ip_type": "ipv4", "idle": "60", "reserved": null, "zones_reserved": [],
               "tags": [{"Key": "Name", "Value": "tf"}]}),
        "{v:#}"
    );
    assert_eq!(v["sg_answer"], json!(["sg-1", "sg-2"]));
    assert_eq!(
        v["subnets_answer"],
        json!(["subnet-a", "subnet-b", "subnet-c"])
    );
    assert_eq!(v["ip_answer"], "dualstack");
    assert_eq!(
        v["lb_updated"],
        json!({"state": "active", "sgs": ["sg-1", "sg-2"],
               "subnets": ["subnet-a", "subnet-b", "subnet-c"], "ip_type": "dualstack",
               "idle": "120", "reserved": null, "zones_reserved": [],
               "tags": [{"Key": "Name", "Value": "tf"}]}),
        "{v:#}"
    );
    assert_eq!(v["tg_free"], "TargetGroupNotFound");
    assert_eq!(v["tg_path"], "/health");
    assert_eq!(v["attached"], json!([["10.0.0.5", "unused"]]), "{v:#}");
    let created = &v["listener_created"];
    assert_eq!(created["port"], 18080);
    assert_eq!(created["action"], "forward");
    let a = &created["attributes"];
    assert_eq!(a["routing.http.response.server.enabled"], "true", "{a:#}");
    assert_eq!(
        a["routing.http.response.x_frame_options.header_value"], "",
        "{a:#}"
    );
    assert!(a.get("tcp.idle_timeout.seconds").is_none(), "{a:#}");
    assert_eq!(v["listener_attrs_answer"], "false");
    let updated = &v["listener_updated"];
    assert_eq!(updated["port"], 18081);
    assert_eq!(updated["action"], "fixed-response");
    assert_eq!(
        updated["attributes"]["routing.http.response.server.enabled"],
        "false"
    );
    assert_eq!(
        updated["attributes"]["routing.http.response.x_frame_options.header_value"],
        "DENY"
    );
    assert_eq!(v["listener_bad_key"], "InvalidConfigurationRequest");
    assert_eq!(v["listener_missing"], "ListenerNotFound");
    assert_eq!(v["rule"], json!(["20", ["/v2/*"]]));
    assert_eq!(v["detached"], json!(["Target.NotRegistered"]), "{v:#}");
    assert_eq!(v["nlb_enforce"], "off");
    assert_eq!(v["nlb_no_sgs"], "InvalidConfigurationRequest");
    assert_eq!(v["tcp_default"], json!({"tcp.idle_timeout.seconds": "350"}));
    assert_eq!(v["tcp_set"], json!({"tcp.idle_timeout.seconds": "600"}));
    assert_eq!(v["tcp_too_long"], "ValidationError");
    assert_eq!(v["nlb_ip_type"], "InvalidConfigurationRequest");
}

/// `aws elbv2 wait load-balancer-available`, `target-in-service` (a registered target
/// of a group a listener forwards to passes its health checks) and
/// `target-deregistered`, as botocore's elbv2 waiters-2.json polls them.
#[test]
fn the_aws_cli_s_elbv2_waiters_succeed() {
    let api = Api::start();
    let t = Targets::start(&["w"]);
    let lb = elbv2(&api, &["create-load-balancer", "--name", "tf-wait"]);
    let lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_string();
    let wait = |args: &[&str]| {
        let out = api.aws_in("elbv2", args);
        assert!(
            out.status.success(),
            "aws elbv2 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    wait(&[
        "wait",
        "load-balancer-available",
        "--load-balancer-arns",
        &lb_arn,
    ]);
    let tg = common::elb::http_target_group(&api, "tf-wait", 0);
    let port = common::util::free_port().to_string();
    common::elb::http_listener(&api, &lb_arn, &port, &tg);
    let target = format!("Id=127.0.0.1,Port={}", t.ports[0]);
    elbv2(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &target,
        ],
    );
    wait(&[
        "wait",
        "target-in-service",
        "--target-group-arn",
        &tg,
        "--targets",
        &target,
    ]);
    let h = elbv2(&api, &["describe-target-health", "--target-group-arn", &tg]);
    assert_eq!(
        h["TargetHealthDescriptions"][0]["TargetHealth"]["State"],
        "healthy"
    );
    elbv2(
        &api,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &target,
        ],
    );
    wait(&[
        "wait",
        "target-deregistered",
        "--target-group-arn",
        &tg,
        "--targets",
        &target,
    ]);
}

/// The provider's calls for Cloud Map's namespaces, services and instances
/// (terraform-provider-aws internal/service/servicediscovery/{private_dns_namespace,
/// http_namespace,service,instance}.go and the operation waiter of wait.go): each
/// create waits on GetOperation, each Read gets the resource and its tags, a changed
/// description is UpdatePrivateDnsNamespace / UpdateHttpNamespace / UpdateService.
#[test]
fn terraform_s_cloud_map_calls_are_answered_as_aws_answers_them() {
    let api = Api::start();
    let v: Value = api.boto3(
        &[
            PRELUDE,
            r#"
c = boto3.client("servicediscovery", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
def done(op):
    o = c.get_operation(OperationId=op["OperationId"])["Operation"]
    assert o["Status"] == "SUCCESS", o
    return o["Targets"]
tags = [{"Key": "Name", "Value": "tf"}]
def read_ns(i):
    n = c.get_namespace(Id=i)["Namespace"]
    t = c.list_tags_for_resource(ResourceARN=n["Arn"])["Tags"]
    return [n.get("Description"), t]

# aws_service_discovery_private_dns_namespace
ns = done(c.create_private_dns_namespace(Name="tf.local", Vpc="vpc-1", Description="one",
    CreatorRequestId=str(uuid.uuid4()), Tags=tags))["NAMESPACE"]
out["private_created"] = read_ns(ns)
done(c.update_private_dns_namespace(Id=ns, UpdaterRequestId=str(uuid.uuid4()),
    Namespace={"Description": "two", "Properties": {"DnsProperties": {"SOA": {"TTL": 60}}}}))
out["private_updated"] = read_ns(ns)
n = c.get_namespace(Id=ns)["Namespace"]
out["soa_ttl"] = n["Properties"]["DnsProperties"]["SOA"]["TTL"]
out["private_missing"] = code(c.update_private_dns_namespace, Id="ns-aaaaaaaaaaaaaaaa",
    Namespace={"Description": "x"})

# aws_service_discovery_http_namespace
hns = done(c.create_http_namespace(Name="tf-http", Description="one",
    CreatorRequestId=str(uuid.uuid4()), Tags=tags))["NAMESPACE"]
out["http_created"] = read_ns(hns)
done(c.update_http_namespace(Id=hns, UpdaterRequestId=str(uuid.uuid4()),
    Namespace={"Description": "two"}))
out["http_updated"] = read_ns(hns)
out["http_as_private"] = code(c.update_private_dns_namespace, Id=hns,
    Namespace={"Description": "x"})

# aws_service_discovery_service: create, Read, update, Read.
svc = c.create_service(Name="web", NamespaceId=ns, CreatorRequestId=str(uuid.uuid4()),
    Description="one", Tags=tags, HealthCheckCustomConfig={"FailureThreshold": 1},
    DnsConfig={"NamespaceId": ns, "RoutingPolicy": "MULTIVALUE",
               "DnsRecords": [{"Type": "A", "TTL": 10}]})["Service"]
s = c.get_service(Id=svc["Id"])["Service"]
c.list_tags_for_resource(ResourceARN=s["Arn"])
done(c.update_service(Id=svc["Id"], Service={"Description": "two",
    "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 20}]}}))
s = c.get_service(Id=svc["Id"])["Service"]
out["service_updated"] = [s["Description"], s["DnsConfig"]["DnsRecords"][0]["TTL"]]

# aws_service_discovery_instance: register, Read, register again (its update), delete.
from botocore.config import Config
d = boto3.client("servicediscovery", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
    config=Config(inject_host_prefix=False))
def revision():
    return d.discover_instances_revision(NamespaceName="tf.local", ServiceName="web")["InstancesRevision"]
before = revision()
done(c.register_instance(ServiceId=svc["Id"], InstanceId="i-1",
    CreatorRequestId=str(uuid.uuid4()), Attributes={"AWS_INSTANCE_IPV4": "10.0.0.9"}))
out["revision_moved"] = revision() > before
out["revision_is_discover_s"] = revision() == d.discover_instances(NamespaceName="tf.local",
    ServiceName="web")["InstancesRevision"]
out["revision_missing"] = code(d.discover_instances_revision, NamespaceName="tf.local",
    ServiceName="nope")
out["instance"] = c.get_instance(ServiceId=svc["Id"], InstanceId="i-1")["Instance"]["Attributes"]
done(c.register_instance(ServiceId=svc["Id"], InstanceId="i-1",
    CreatorRequestId=str(uuid.uuid4()), Attributes={"AWS_INSTANCE_IPV4": "10.0.0.10"}))
out["instance_again"] = c.get_instance(ServiceId=svc["Id"], InstanceId="i-1")["Instance"]["Attributes"]
done(c.deregister_instance(ServiceId=svc["Id"], InstanceId="i-1"))

# The deletes.
c.delete_service(Id=svc["Id"])
done(c.delete_namespace(Id=ns))
done(c.delete_namespace(Id=hns))
out["gone"] = code(c.get_namespace, Id=ns)
print(json.dumps(out))
"#,
        ]
        .concat(),
    );
    let tags = json!([{"Key": "Name", "Value": "tf"}]);
    assert_eq!(v["private_created"], json!(["one", tags]), "{v:#}");
    assert_eq!(v["private_updated"], json!(["two", tags]), "{v:#}");
    assert_eq!(v["soa_ttl"], 60);
    assert_eq!(v["private_missing"], "NamespaceNotFound");
    assert_eq!(v["http_created"], json!(["one", tags]));
    assert_eq!(v["http_updated"], json!(["two", tags]));
    assert_eq!(v["http_as_private"], "InvalidInput");
    assert_eq!(v["service_updated"], json!(["two", 20]));
    assert_eq!(v["instance"], json!({"AWS_INSTANCE_IPV4": "10.0.0.9"}));
    assert_eq!(
        v["instance_again"],
        json!({"AWS_INSTANCE_IPV4": "10.0.0.10"})
    );
    assert_eq!(v["gone"], "NamespaceNotFound");
    assert_eq!(v["revision_moved"], true);
    assert_eq!(v["revision_is_discover_s"], true);
    assert_eq!(v["revision_missing"], "ServiceNotFound");
}
