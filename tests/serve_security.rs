//! Root integration tests of `serve`'s protections, with the real AWS CLI and botocore:
//! SigV4 verification (AWS's error names for a wrong secret, an unknown key, a skewed
//! clock, an unsigned request), the refusal to serve a non-loopback address without
//! authentication, TLS, and the bounds (a 10 MB body, a 100,000-deep JSON, slow clients)
//! while `serve` keeps answering others. Only loopback traffic.

mod common;

use common::cli::Mf;
use common::services::tool;
use common::tls::TestCa;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ID: &str = "AKIDSERVETEST";
const SECRET: &str = "c2VydmUtdGVzdC1zZWNyZXQ/K7MDENG+bPxRfiCY";

/// `minifargate serve` with `args` (and env `env`) on a free loopback port; killed on drop.
struct Serve {
    mf: Mf,
    child: Child,
    endpoint: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Serve {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mf = Mf::new();
        let mut c = mf.cmd();
        c.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start minifargate serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .split_whitespace()
            .last()
            .filter(|u| u.contains("://127.0.0.1:"))
            .unwrap_or_else(|| panic!("serve did not print its address: {line:?}"))
            .to_string();
        // Its stderr, line by line, for the start-up notice and the refusals' log lines.
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("serve: {l}");
                let _ = tx.send(l);
            }
        });
        Serve {
            mf,
            child,
            endpoint,
            stderr,
        }
    }

    fn addr(&self) -> String {
        self.endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    }

    /// The stderr lines so far.
    fn stderr_lines(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        self.stderr.try_iter().collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A credentials file (mode 0600) with our key pair, in `dir`.
fn keys_file(dir: &Path) -> String {
    let p = dir.join("api-keys");
    std::fs::write(&p, format!("# test keys\n{ID} {SECRET}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.to_str().unwrap().to_string()
}

/// The real AWS CLI (`awscli.clidriver`, as the `aws` script runs it) with keys `id`/`secret`
/// (None: `--no-sign-request`), its clock `skew_secs` off (botocore's signing clock only),
/// against `endpoint`.
fn aws(endpoint: &str, id: &str, secret: &str, skew_secs: i64, extra: &[&str]) -> Output {
    let script = "import sys, datetime, botocore.auth, awscli.clidriver\n\
        skew = datetime.timedelta(seconds=int(sys.argv[1]))\n\
        real = botocore.auth.get_current_datetime\n\
        botocore.auth.get_current_datetime = lambda *a, **k: real(*a, **k) + skew\n\
        sys.argv = ['aws'] + sys.argv[2:]\n\
        sys.exit(awscli.clidriver.main())\n";
    let mut c = Command::new(tool("python3"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    common::util::no_proxy(&mut c);
    let out = c
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .env("AWS_MAX_ATTEMPTS", "1")
        .args(["-c", script, &skew_secs.to_string()])
        .args(["ecs", "--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(["--output", "json"])
        .args(extra)
        .output()
        .expect("run python3 with awscli (is awscli in target/test-venv?)");
    eprintln!(
        "$ aws ecs {} (skew {skew_secs}s, key {id})\n  exit: {}\n  stdout: {}\n  stderr: {}",
        extra.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "the AWS CLI call failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn refused(out: &Output, name: &str) -> String {
    assert!(!out.status.success(), "the AWS CLI call should have failed");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(&format!("An error occurred ({name})")),
        "expected {name}, got: {err}"
    );
    err
}

#[test]
fn signatures_are_verified_with_aws_error_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(&["--credentials-file", &keys_file(dir.path())], &[]);
    assert!(
        s.stderr_lines()
            .iter()
            .any(|l| l.contains("must be SigV4-signed with one of 1 access key")),
        "serve says at start that requests must be signed"
    );
    let ep = &s.endpoint;

    // The right key: works, also for a request with a body.
    let out = aws(
        ep,
        ID,
        SECRET,
        0,
        &["create-cluster", "--cluster-name", "signed"],
    );
    assert_eq!(ok(&out)["cluster"]["clusterName"], "signed");
    let out = aws(ep, ID, SECRET, 0, &["list-clusters"]);
    assert!(
        ok(&out)["clusterArns"]
            .to_string()
            .contains("cluster/signed")
    );

    // A wrong secret, an unknown key id, an unsigned request.
    let err = refused(
        &aws(ep, ID, "not-the-secret", 0, &["list-clusters"]),
        "InvalidSignatureException",
    );
    assert!(
        err.contains("does not match the signature you provided"),
        "{err}"
    );
    refused(
        &aws(ep, "AKIDUNKNOWN", SECRET, 0, &["list-clusters"]),
        "UnrecognizedClientException",
    );
    refused(
        &aws(ep, ID, SECRET, 0, &["list-clusters", "--no-sign-request"]),
        "MissingAuthenticationTokenException",
    );

    // A clock 10 minutes behind, and 10 minutes ahead: AWS's 5-minute window.
    let err = refused(
        &aws(ep, ID, SECRET, -600, &["list-clusters"]),
        "InvalidSignatureException",
    );
    assert!(
        err.contains("Signature expired: ") && err.contains(" - 5 min.)"),
        "{err}"
    );
    let err = refused(
        &aws(ep, ID, SECRET, 600, &["list-clusters"]),
        "InvalidSignatureException",
    );
    assert!(err.contains("Signature not yet current: "), "{err}");
    // Two minutes off is within it.
    ok(&aws(ep, ID, SECRET, -120, &["list-clusters"]));

    // Nothing refused reached the core: the only cluster is the signed one.
    let out = aws(ep, ID, SECRET, 0, &["list-clusters"]);
    assert_eq!(ok(&out)["clusterArns"].as_array().unwrap().len(), 1);
}

/// The presigned (query string) form, signed by botocore's own SigV4QueryAuth and sent
/// as is.
#[test]
fn presigned_requests_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(&["--credentials-file", &keys_file(dir.path())], &[]);
    let script = r#"
import sys, json, urllib.request, urllib.error
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
ep, key, secret, expires = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
req = AWSRequest(method="POST", url=ep + "/", data=b"{}", headers={
    "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
    "Content-Type": "application/x-amz-json-1.1"})
SigV4QueryAuth(Credentials(key, secret), "ecs", "us-east-1", expires=expires).add_auth(req)
p = req.prepare()
body = p.body.encode() if isinstance(p.body, str) else p.body
r = urllib.request.Request(p.url, data=body, headers=dict(p.headers), method="POST")
try:
    with urllib.request.urlopen(r) as resp:
        print(json.dumps({"status": resp.status, "body": json.loads(resp.read())}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": json.loads(e.read())}))
"#;
    let presigned = |secret: &str| -> serde_json::Value {
        let mut c = Command::new(tool("python3"));
        common::util::no_proxy(&mut c);
        let out = c
            .args(["-c", script, &s.endpoint, ID, secret, "60"])
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let good = presigned(SECRET);
    assert_eq!(good["status"], 200, "{good}");
    assert!(good["body"]["clusterArns"].is_array(), "{good}");
    let bad = presigned("not-the-secret");
    assert_eq!(bad["status"], 400, "{bad}");
    assert_eq!(bad["body"]["__type"], "InvalidSignatureException", "{bad}");
}

#[test]
fn unauthenticated_serving_is_loopback_only_and_said_at_start() {
    // Loopback without keys: any request, and a notice.
    let s = Serve::start(&[], &[]);
    assert!(
        s.stderr_lines()
            .iter()
            .any(|l| l.contains("API authentication is OFF")),
        "serve says at start that authentication is off"
    );
    ok(&aws(&s.endpoint, "anything", "goes", 0, &["list-clusters"]));
    ok(&aws(
        &s.endpoint,
        "anything",
        "goes",
        0,
        &["list-clusters", "--no-sign-request"],
    ));
    drop(s);

    let mf = Mf::new();
    let start = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = mf.cmd();
        c.args(["serve"]).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // A non-loopback address without keys: refused at start, nothing listening.
    let out = start(&["--listen", "0.0.0.0:0"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("refusing to serve the API on 0.0.0.0:0 without authentication")
            && err.contains("--insecure-no-auth"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it must not have listened");
    // A half-given key pair, and a credentials file others can read: refused too.
    let out = start(
        &["--listen", "0.0.0.0:0"],
        &[("MINIFARGATE_API_ACCESS_KEY_ID", ID)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be set together"));
    let dir = tempfile::tempdir().unwrap();
    let f = keys_file(dir.path());
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = start(&["--credentials-file", &f], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn keys_from_the_environment_and_tls_with_the_aws_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let leaf = ca.issue("serve", &["localhost"], &["127.0.0.1"], true);
    let s = Serve::start(
        &[
            "--tls-cert",
            leaf.cert.to_str().unwrap(),
            "--tls-key",
            leaf.key.to_str().unwrap(),
        ],
        &[
            ("MINIFARGATE_API_ACCESS_KEY_ID", ID),
            ("MINIFARGATE_API_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    assert!(
        s.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        s.endpoint
    );
    let ca_bundle = ca.cert.to_str().unwrap();
    let out = aws(
        &s.endpoint,
        ID,
        SECRET,
        0,
        &["list-clusters", "--ca-bundle", ca_bundle],
    );
    assert!(ok(&out)["clusterArns"].is_array());
    refused(
        &aws(
            &s.endpoint,
            ID,
            "wrong",
            0,
            &["list-clusters", "--ca-bundle", ca_bundle],
        ),
        "InvalidSignatureException",
    );
    // Without the CA, the AWS CLI refuses the server's certificate.
    let out = aws(&s.endpoint, ID, SECRET, 0, &["list-clusters"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CERTIFICATE_VERIFY_FAILED"),
        "expected a certificate verification failure"
    );
    // Plain HTTP to the TLS port gets nothing served.
    let mut t = TcpStream::connect(s.addr()).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = t.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    let mut buf = Vec::new();
    let _ = t.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("clusterArns"));
}

/// A raw HTTP/1.1 request to `addr`; returns the status line and body (or the I/O error
/// text when the server cut the connection).
fn raw(addr: &str, target: &str, body: &[u8]) -> String {
    let mut t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: AmazonEC2ContainerServiceV20141113.{target}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let sent = t.write_all(head.as_bytes()).and_then(|_| t.write_all(body));
    let mut buf = Vec::new();
    let read = t.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    match (sent, read) {
        _ if !text.is_empty() => text,
        (Err(e), _) | (_, Err(e)) => format!("connection error: {e}"),
        _ => "connection closed without an answer".into(),
    }
}

/// `list-clusters` over the AWS CLI answers, within 5 s.
fn answers(s: &Serve) {
    let started = Instant::now();
    ok(&aws(&s.endpoint, "any", "any", 0, &["list-clusters"]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "list-clusters took {:?}",
        started.elapsed()
    );
}

#[test]
fn oversized_deep_and_slow_requests_are_cut_off_while_others_are_answered() {
    let s = Serve::start(&[], &[]);
    let addr = s.addr();

    // Slow clients in the background: one sends its headers a byte a second, one its
    // body, one connects and sends nothing. Each must be cut off by the 10 s timeouts.
    let slow = |what: &'static str| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut t = TcpStream::connect(&addr).unwrap();
            t.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let started = Instant::now();
            let head = format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: \
                 AmazonEC2ContainerServiceV20141113.ListClusters\r\nContent-Length: 100\r\n\r\n"
            );
            let (fast, dribble): (&[u8], &[u8]) = match what {
                "headers" => (b"", head.as_bytes()),
                "body" => (head.as_bytes(), &[b' '; 100]),
                _ => (b"", b""),
            };
            t.write_all(fast).unwrap();
            let mut reply = Vec::new();
            let mut i = 0;
            // Until the server closes (read returns 0 or an error other than a timeout).
            while started.elapsed() < Duration::from_secs(40) {
                if i < dribble.len() {
                    if t.write_all(&dribble[i..i + 1]).is_err() {
                        break;
                    }
                    i += 1;
                }
                let mut b = [0u8; 512];
                match t.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => reply.extend_from_slice(&b[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            (
                started.elapsed(),
                i,
                String::from_utf8_lossy(&reply).into_owned(),
            )
        })
    };
    let slow_clients = [slow("headers"), slow("body"), slow("idle")];
    std::thread::sleep(Duration::from_secs(2));
    answers(&s);

    // A 10 MB body: refused (413 before it is read, or the connection cut).
    let reply = raw(&addr, "ListClusters", &vec![b' '; 10 * 1024 * 1024]);
    assert!(
        reply.starts_with("HTTP/1.1 413") || reply.starts_with("connection"),
        "{reply}"
    );
    if reply.starts_with("HTTP/1.1 413") {
        assert!(reply.contains("this server's limit"), "{reply}");
    }
    answers(&s);

    // 100,000-deep JSON, as a task definition and as a RunTask request: refused as
    // malformed (serde_json's nesting limit), no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for target in ["RegisterTaskDefinition", "RunTask", "ListClusters"] {
        let reply = raw(&addr, target, deep.as_bytes());
        eprintln!(
            "{target} 100,000-deep: {}",
            reply.lines().last().unwrap_or_default()
        );
        assert!(reply.starts_with("HTTP/1.1 400"), "{target}: {reply}");
        assert!(
            reply.contains("Exception"),
            "{target}: an ECS error expected: {reply}"
        );
    }
    let deep_obj = format!("{}1{}", "{\"\":".repeat(50_000), "}".repeat(50_000));
    let reply = raw(&addr, "RunTask", deep_obj.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    answers(&s);

    for (what, h) in ["headers", "body", "idle"].into_iter().zip(slow_clients) {
        let (took, sent, reply) = h.join().unwrap();
        eprintln!("slow {what}: cut after {took:?}, {sent} bytes sent, reply {reply:?}");
        assert!(
            took < Duration::from_secs(15),
            "the slow {what} client held its connection for {took:?}"
        );
        if what == "body" {
            assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        }
    }
    answers(&s);
    assert!(
        s.mf.run(&["list-clusters"]).status.success(),
        "the store is fine"
    );
}
