//! The load balancer tests' shapes, through the real `aws elbv2` against a serve: an
//! application load balancer; an HTTP target group of `ip` targets on port 8080, checked
//! every 5 s (timeout 2 s, healthy after 2) with a deregistration delay of the test's
//! choosing; an HTTP listener forwarding to it; a client asking listeners all along.

use super::api::Api;
use serde_json::Value;

/// The value of attribute `key` in an answer's `Attributes` (a load balancer's or a target
/// group's), if it is there.
pub fn attribute(v: &Value, key: &str) -> Option<String> {
    v["Attributes"]
        .as_array()?
        .iter()
        .find(|a| a["Key"] == key)
        .map(|a| a["Value"].as_str().unwrap().to_string())
}

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
    create_lb(api, &["create-load-balancer", "--name", name])
}

/// A network load balancer named `name`.
pub fn create_nlb(api: &Api, name: &str) -> Alb {
    create_lb(
        api,
        &["create-load-balancer", "--name", name, "--type", "network"],
    )
}

fn create_lb(api: &Api, args: &[&str]) -> Alb {
    let v = elbv2(api, args);
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
    target_group_of(api, name, delay, "ip")
}

/// [`http_target_group`] with targets of type `target_type` (`ip`, `instance`).
pub fn target_group_of(api: &Api, name: &str, delay: u32, target_type: &str) -> String {
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
            target_type,
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
    listener_with_default(api, lb, port, &format!("Type=forward,TargetGroupArn={tg}"))
}

/// A TCP target group `name` of `target_type` targets on `port`: its ARN.
pub fn tcp_target_group(api: &Api, name: &str, port: &str, target_type: &str) -> String {
    let tg = elbv2(
        api,
        &[
            "create-target-group",
            "--name",
            name,
            "--protocol",
            "TCP",
            "--port",
            port,
            "--vpc-id",
            "vpc-1",
            "--target-type",
            target_type,
        ],
    );
    tg["TargetGroups"][0]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A TCP listener of load balancer `lb` on `port` forwarding to `tg`: its ARN.
pub fn tcp_listener(api: &Api, lb: &str, port: &str, tg: &str) -> String {
    let action = format!("Type=forward,TargetGroupArn={tg}");
    listener_of(api, lb, "TCP", port, &action)
}

/// An HTTP listener of load balancer `lb` on `port` with default action `action` (the
/// CLI's shorthand): its ARN.
fn listener_with_default(api: &Api, lb: &str, port: &str, action: &str) -> String {
    listener_of(api, lb, "HTTP", port, action)
}

fn listener_of(api: &Api, lb: &str, protocol: &str, port: &str, action: &str) -> String {
    let l = elbv2(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            lb,
            "--protocol",
            protocol,
            "--port",
            port,
            "--default-actions",
            action,
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
        Client::start_named(api, ip, ip, ports)
    }

    /// [`Client::start`] asking for `name` (its `Host` header) at its address `ip`, as a
    /// client that resolved a load balancer's `DNSName` does. One client at a time per
    /// serve (they share the stop file).
    pub fn start_named(api: &Api, name: &str, ip: &str, ports: &[u16]) -> Client {
        let stop = api.mf.dir.path().join("client.stop");
        let _ = std::fs::remove_file(&stop);
        let stop = stop.to_str().unwrap().to_string();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let child = std::process::Command::new("python3")
            .args([
                "-c",
                r#"
import http.client, json, os, sys, time
ip, name, stop, ports = sys.argv[1], sys.argv[2], sys.argv[3], [int(p) for p in sys.argv[4:]]
conns = {p: http.client.HTTPConnection(ip, p, timeout=10) for p in ports}
out = []
end = time.time() + 300
while time.time() < end and not os.path.exists(stop):
    for p in ports:
        sent = time.time()
        try:
            conns[p].request("GET", "/", headers={"Host": name})
            r = conns[p].getresponse()
            out.append([time.time(), p, r.status, r.read().decode().strip(), sent])
        except Exception as e:
            out.append([time.time(), p, type(e).__name__, "", sent])
            conns[p].close()
            conns[p] = http.client.HTTPConnection(ip, p, timeout=10)
    time.sleep(0.01)
print(json.dumps(out))
"#,
                ip,
                name,
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
        self.finish_sent().into_iter().map(|(a, _)| a).collect()
    }

    /// Every answer, in order, with when its request was sent: an answer that came after
    /// a moment may be to a request sent before it.
    pub fn finish_sent(self) -> Vec<((f64, u16, String, String), f64)> {
        std::fs::write(&self.stop, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        v.iter()
            .map(|a| {
                (
                    (
                        a[0].as_f64().unwrap(),
                        a[1].as_u64().unwrap() as u16,
                        a[2].to_string().trim_matches('"').to_string(),
                        a[3].as_str().unwrap().to_string(),
                    ),
                    a[4].as_f64().unwrap(),
                )
            })
            .collect()
    }
}

/// Three HTTP servers on loopback (the targets), each answering `GET /` with its name
/// and the X-Forwarded headers it got (closing the connection after it for `/close…`; padded
/// to over 4 MB for `/close-big`), and
/// `GET /health` with 200, or 503 while the file `<dir>/<name>.sick` exists; other requests are answered after 2 s
/// (or the seconds it holds) while `<dir>/<name>.slow` exists, and with 500 while `<dir>/<name>.bad` does. Killed on drop.
pub struct Targets {
    dir: tempfile::TempDir,
    procs: Vec<std::process::Child>,
    pub ports: Vec<u16>,
}

const TARGET_PY: &str = r#"
import http.server, json, os, sys, time
name, port, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/health":
            code = 503 if os.path.exists(os.path.join(d, name + ".sick")) else 200
            body = b"ok"
        else:
            slow = os.path.join(d, name + ".slow")
            if os.path.exists(slow):
                with open(slow) as f:
                    time.sleep(float(f.read().strip() or 2))
            code = 500 if os.path.exists(os.path.join(d, name + ".bad")) else 200
            if self.path.startswith("/login"):
                self.cookie = "session=" + name + "; Path=/"
            answer = {"name": name, "xff": self.headers.get("X-Forwarded-For"),
                      "proto": self.headers.get("X-Forwarded-Proto"),
                      "port": self.headers.get("X-Forwarded-Port"),
                      "host": self.headers.get("Host"), "path": self.path}
            if self.path.startswith("/close-big"):
                answer["pad"] = "x" * 4000000
            body = json.dumps(answer).encode()
        self.send_response(code)
        if getattr(self, "cookie", None):
            self.send_header("Set-Cookie", self.cookie)
        if self.path.startswith("/close"):
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

impl Targets {
    pub fn start(names: &[&str]) -> Targets {
        let dir = tempfile::Builder::new()
            .prefix("mf-elb-")
            .tempdir()
            .unwrap();
        let mut procs = Vec::new();
        let mut ports = Vec::new();
        for n in names {
            let port = super::util::free_port();
            let child = std::process::Command::new("python3")
                .args(["-c", TARGET_PY, n, &port.to_string()])
                .arg(dir.path())
                .spawn()
                .unwrap();
            procs.push(child);
            ports.push(port);
        }
        for p in &ports {
            super::util::wait_until(
                "a target listens",
                std::time::Duration::from_secs(10),
                || std::net::TcpStream::connect(("127.0.0.1", *p)).ok(),
            );
        }
        Targets { dir, procs, ports }
    }

    pub fn sick(&self, name: &str, sick: bool) {
        self.mark(name, "sick", sick);
    }

    /// Target `name` answers every request but `/health` after 2 s while `slow`.
    pub fn slow(&self, name: &str, slow: bool) {
        self.mark(name, "slow", slow);
    }

    /// Target `name` answers every request but `/health` with 500 while `bad` (its health
    /// checks pass: a gray failure).
    pub fn bad(&self, name: &str, bad: bool) {
        self.mark(name, "bad", bad);
    }

    /// Target `name` answers every request but `/health` after `secs` seconds (a request
    /// looks when it arrives).
    pub fn slow_for(&self, name: &str, secs: u32) {
        let f = self.dir.path().join(format!("{name}.slow"));
        std::fs::write(f, secs.to_string()).unwrap();
    }

    fn mark(&self, name: &str, what: &str, on: bool) {
        let f = self.dir.path().join(format!("{name}.{what}"));
        if on {
            std::fs::write(f, "").unwrap();
        } else {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// An HTTP listener of `lb` on a free port answering 404 by default, and its rule 1
/// forwarding every path by `actions` (JSON): (port, rule ARN).
pub fn listener_with_rule(api: &Api, lb: &str, actions: &Value) -> (u16, String) {
    let port = super::util::free_port();
    let listener = listener_with_default(
        api,
        lb,
        &port.to_string(),
        "Type=fixed-response,FixedResponseConfig={StatusCode=404}",
    );
    let r = elbv2(
        api,
        &[
            "create-rule",
            "--listener-arn",
            &listener,
            "--priority",
            "1",
            "--conditions",
            "Field=path-pattern,Values=/*",
            "--actions",
            &actions.to_string(),
        ],
    );
    (port, r["Rules"][0]["RuleArn"].as_str().unwrap().to_string())
}

/// `GET url` with curl (no proxy, 10 s at most): the status (0 when none came) and body.
pub fn get(url: &str) -> (u16, String) {
    get_with(url, &[])
}

/// [`get`] with curl's `extra` arguments (a header, say) before the URL.
pub fn get_with(url: &str, extra: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--noproxy", "*", "-m", "10", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
