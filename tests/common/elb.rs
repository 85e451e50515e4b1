//! The load balancer tests' shapes, through the real `aws elbv2` against a serve: an
//! application load balancer; an HTTP target group of `ip` targets on port 8080, checked
//! every 5 s (timeout 2 s, healthy after 2) with a deregistration delay of the test's
//! choosing; an HTTP listener forwarding to it; a client asking listeners all along.

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

/// A client sending `GET /` to each of `ports` at `ip` in turn until the file `stop`
/// exists (or 300 s): every answer as `[seconds since the epoch, port, status, body]`.
pub struct Client {
    child: std::process::Child,
    stop: String,
}

impl Client {
    pub fn start(api: &Api, ip: &str, ports: &[u16]) -> Client {
        let stop = api.mf.dir.path().join("client.stop");
        let stop = stop.to_str().unwrap().to_string();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let child = std::process::Command::new("python3")
            .args([
                "-c",
                r#"
import http.client, json, os, sys, time
ip, stop, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
conns = {p: http.client.HTTPConnection(ip, p, timeout=10) for p in ports}
out = []
end = time.time() + 300
while time.time() < end and not os.path.exists(stop):
    for p in ports:
        try:
            conns[p].request("GET", "/")
            r = conns[p].getresponse()
            out.append([time.time(), p, r.status, r.read().decode().strip()])
        except Exception as e:
            out.append([time.time(), p, type(e).__name__, ""])
            conns[p].close()
            conns[p] = http.client.HTTPConnection(ip, p, timeout=10)
    time.sleep(0.01)
print(json.dumps(out))
"#,
                ip,
                &stop,
            ])
            .args(&ports)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Client { child, stop }
    }

    /// Every answer, in order: (time, port, status, the body's version).
    pub fn finish(self) -> Vec<(f64, u16, String, String)> {
        std::fs::write(&self.stop, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        v.iter()
            .map(|a| {
                (
                    a[0].as_f64().unwrap(),
                    a[1].as_u64().unwrap() as u16,
                    a[2].to_string().trim_matches('"').to_string(),
                    a[3].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}
