//! The load balancer tests' shapes, through the real `aws elbv2` against a serve: an
//! application load balancer; an HTTP target group of `ip` targets on port 8080, checked
//! every 5 s (timeout 2 s, healthy after 2) with a deregistration delay of the test's
//! choosing; an HTTP listener forwarding to it.

use super::api::Api;
use serde_json::Value;

/// `aws elbv2 ARGS` against `api`: its JSON answer (Null when it printed nothing).
pub fn elbv2(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("elbv2", args);
    assert!(
        out.status.success(),
        "aws elbv2 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A load balancer CreateLoadBalancer answered.
pub struct Alb {
    pub arn: String,
    pub dns: String,
    /// Its one address (`LoadBalancerAddresses`).
    pub ip: String,
}

/// An application load balancer named `name`.
pub fn create_alb(api: &Api, name: &str) -> Alb {
    let v = elbv2(api, &["create-load-balancer", "--name", name]);
    let lb = &v["LoadBalancers"][0];
    let text = |v: &Value| v.as_str().unwrap().to_string();
    Alb {
        arn: text(&lb["LoadBalancerArn"]),
        dns: text(&lb["DNSName"]),
        ip: text(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]),
    }
}

/// An HTTP target group `name` of `ip` targets on 8080, checked every 5 s (timeout 2 s,
/// healthy after 2), deregistration delay `delay` seconds: its ARN.
pub fn http_target_group(api: &Api, name: &str, delay: u32) -> String {
    let tg = elbv2(
        api,
        &[
            "create-target-group",
            "--name",
            name,
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
        ],
    );
    let arn = tg["TargetGroups"][0]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_string();
    elbv2(
        api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &arn,
            "--attributes",
            &format!("Key=deregistration_delay.timeout_seconds,Value={delay}"),
        ],
    );
    arn
}

/// An HTTP listener of load balancer `lb` on `port` forwarding to `tg`: its ARN.
pub fn http_listener(api: &Api, lb: &str, port: &str, tg: &str) -> String {
    let l = elbv2(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            lb,
            "--protocol",
            "HTTP",
            "--port",
            port,
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
        ],
    );
    l["Listeners"][0]["ListenerArn"]
        .as_str()
        .unwrap()
        .to_string()
}
