//! Root integration tests of `serve`'s protections, with the real AWS CLI and botocore:
//! authentication by default (the generated key and the `minifargate` AWS CLI profile),
//! SigV4 verification (AWS's error names for a wrong secret, an unknown key, a skewed
//! clock, an unsigned request, a replayed signature, an unsigned body or operation), the
//! Host rule against DNS rebinding, local environment files refused over the API, TLS,
//! and the bounds (a 10 MB body, a 100,000-deep JSON, slow clients) while `serve` keeps
//! answering others. Only loopback traffic.

use crate::common;

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
    /// Taken by [`Serve::stop`].
    mf: Option<Mf>,
    child: Child,
    endpoint: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Serve {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mf = Mf::new();
        let home = mf.dir.path().join("home");
        Serve::start_in(mf, &home, args, env)
    }

    /// [`Serve::start`] over `mf` with HOME `home`.
    fn start_in(mf: Mf, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut c = common::api::serve_cmd(&mf, home);
        c.args(["--listen", "127.0.0.1:0"]).args(args);
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
            mf: Some(mf),
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

    fn mf(&self) -> &Mf {
        self.mf.as_ref().unwrap()
    }

    /// Stops serve (SIGTERM); returns its root, for another start over it.
    fn stop(mut self) -> Mf {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.mf.take().unwrap()
    }

    /// The stderr lines so far.
    fn stderr_lines(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        self.stderr.try_iter().collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Not again after stop(): its pid may be another process's by now.
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
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
fn unauthenticated_serving_only_when_asked_and_said_loudly() {
    // --insecure-no-auth: any request, and a warning.
    let s = Serve::start(&["--insecure-no-auth"], &[]);
    assert!(
        s.stderr_lines().iter().any(|l| l
            .contains("WARNING: API authentication is OFF (--insecure-no-auth)")
            && l.contains("root on this host")),
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
    let home = mf.dir.path().join("home");
    let start = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = common::api::serve_cmd(&mf, &home);
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // No authentication and access keys at once: refused at start, nothing listening.
    let out = start(
        &["--listen", "0.0.0.0:0", "--insecure-no-auth"],
        &[
            ("MINIFARGATE_API_ACCESS_KEY_ID", ID),
            ("MINIFARGATE_API_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--insecure-no-auth with access keys"), "{err}");
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
    // Without authentication on purpose: the bounds are checked, and the JSON parsed, for
    // an unsigned request as they are for a signed one.
    let s = Serve::start(&["--insecure-no-auth"], &[]);
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
        s.mf().run(&["list-clusters"]).status.success(),
        "the store is fine"
    );
}

/// The real `aws` with HOME `home` and nothing else of the caller's AWS settings: no
/// endpoint, region or keys on the command line (`--profile minifargate` brings them).
fn aws_with_home(home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(tool("aws"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    common::util::no_proxy(&mut c);
    let out = c
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .env("AWS_MAX_ATTEMPTS", "1")
        .args(args)
        .output()
        .expect("run the aws cli");
    eprintln!(
        "$ HOME={} aws {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
        home.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh `serve` with no flags: it generates a key pair (root only), refuses an unsigned
/// request with AWS's error name, and the AWS CLI and boto3 work through the profile it
/// wrote, with no secret typed; the console signs in with the same key. A restart keeps
/// the key and follows the new port; someone else's profile of that name is left alone.
#[test]
fn a_fresh_serve_requires_signatures_and_writes_a_working_aws_profile() {
    use std::os::unix::fs::MetadataExt;
    let mf = Mf::new();
    let root = mf.root.clone();
    let home = mf.dir.path().join("home");
    let s = Serve::start_in(mf, &home, &[], &[]);
    let said = s.stderr_lines().join("\n");
    assert!(
        said.contains("must be SigV4-signed with the access key"),
        "{said}"
    );
    assert!(said.contains("generated now"), "{said}");
    assert!(said.contains("AWS CLI profile `minifargate`"), "{said}");

    let key = root.join("api/credentials");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&key), 0o600, "the key file is root's only");
    assert_eq!(mode(&root.join("api")), 0o700);
    let (id, secret) = common::api::generated_key(&root);
    assert!(id.starts_with("AKIA") && id.len() == 20, "{id}");
    assert_eq!(secret.len(), 40);
    assert!(
        !said.contains(&secret),
        "the secret is never printed: {said}"
    );

    // Unsigned: refused as AWS refuses it; nothing reaches the core.
    let out = aws(
        &s.endpoint,
        "x",
        "y",
        0,
        &["create-cluster", "--cluster-name", "x", "--no-sign-request"],
    );
    refused(&out, "MissingAuthenticationTokenException");
    // A key that is not serve's.
    refused(
        &aws(&s.endpoint, "AKIDEXAMPLE", "wrong", 0, &["list-clusters"]),
        "UnrecognizedClientException",
    );

    // The profile: the real AWS CLI with nothing but --profile.
    let out = aws_with_home(
        &home,
        &[
            "--profile",
            "minifargate",
            "ecs",
            "create-cluster",
            "--cluster-name",
            "by-profile",
        ],
    );
    assert_eq!(ok(&out)["cluster"]["clusterName"], "by-profile");
    let out = aws_with_home(&home, &["--profile", "minifargate", "ecs", "list-clusters"]);
    let listed = ok(&out)["clusterArns"].to_string();
    assert!(listed.contains("cluster/by-profile"), "{listed}");
    assert!(
        !listed.contains("cluster/x\""),
        "the unsigned call did nothing: {listed}"
    );
    // boto3 from the same profile.
    let out = Command::new(tool("python3"))
        .env("HOME", &home)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env("NO_PROXY", "*")
        .args([
            "-c",
            "import boto3, json; e = boto3.Session(profile_name='minifargate').client('ecs'); \
             print(json.dumps(e.list_clusters()['clusterArns']))",
        ])
        .output()
        .unwrap();
    eprintln!("boto3: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cluster/by-profile"));
    let creds = home.join(".aws/credentials");
    assert_eq!(
        mode(&creds) & 0o077,
        0,
        "the profile's credentials are the user's only"
    );

    // The console signs in with the same key (HTTP Basic).
    let page = format!("{}/", s.endpoint);
    let curl = |user: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "--noproxy",
                "*",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-u", user, &page])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&format!("{id}:{secret}")), "200");
    assert_eq!(curl(&format!("{id}:wrong")), "401");

    // A restart (a new port) keeps the key and rewrites the profile it wrote.
    let s = Serve::start_in(s.stop(), &home, &[], &[]);
    let said = s.stderr_lines().join("\n");
    assert!(said.contains("generated on the first start"), "{said}");
    assert_eq!(
        common::api::generated_key(&root),
        (id.clone(), secret.clone())
    );
    let config = std::fs::read_to_string(home.join(".aws/config")).unwrap();
    assert!(
        config.contains(&format!("endpoint_url = {}", s.endpoint)),
        "{config}"
    );
    assert_eq!(
        config.matches("[profile minifargate]").count(),
        1,
        "{config}"
    );
    ok(&aws_with_home(
        &home,
        &["--profile", "minifargate", "ecs", "list-clusters"],
    ));

    // Someone else's `minifargate` profile is never clobbered: serve says so instead.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join(".aws")).unwrap();
    let theirs = "[profile minifargate]\nregion = eu-west-3\n";
    std::fs::write(other.path().join(".aws/config"), theirs).unwrap();
    let s = Serve::start_in(s.stop(), other.path(), &[], &[]);
    let said = s.stderr_lines().join("\n");
    assert!(
        said.contains("not writing the AWS CLI profile `minifargate`"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(other.path().join(".aws/config")).unwrap(),
        theirs
    );
    assert!(!other.path().join(".aws/credentials").exists());
}

/// A raw request to `addr` addressed to Host `host` (a DNS-rebinding page's own name, as a
/// browser sends it): POST `path` with X-Amz-Target `target`, or GET `path`.
fn with_host(addr: &str, host: &str, method: &str, path: &str, target: &str) -> String {
    let mut t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = match target {
        "RegisterTaskDefinition" => {
            r#"{"family":"rebound","containerDefinitions":[{"name":"a","image":"busybox","memory":64,"privileged":true}]}"#
        }
        _ => "{}",
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: AmazonEC2ContainerServiceV20141113.{target}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    t.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = t.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// DNS rebinding: a request addressed to a host name that points at the loopback listener
/// is refused on every route — the ECS API's `POST /` too — with the reason, as with
/// authentication off, where nothing else stands in its way; a name the operator allows
/// with --allowed-host is answered.
#[test]
fn a_rebound_host_is_refused_on_every_route() {
    let s = Serve::start(&["--insecure-no-auth"], &[]);
    let addr = s.addr();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let rebound = format!("rebound.example:{port}");
    for (method, path) in [
        ("POST", "/"),
        ("GET", "/"),
        ("GET", "/console/api/config"),
        ("POST", "/console/api/ecs/ListClusters"),
        // The registry, open without authentication: the Host rule holds there too.
        ("GET", "/v2/"),
    ] {
        let reply = with_host(&addr, &rebound, method, path, "RegisterTaskDefinition");
        assert!(
            reply.starts_with("HTTP/1.1 421"),
            "{method} {path}: {reply}"
        );
        assert!(
            reply.contains("\"__type\":\"AccessDeniedException\"")
                && reply.contains("DNS-rebinding")
                && reply.contains("--allowed-host"),
            "{method} {path}: {reply}"
        );
    }
    // Nothing was registered; the same request to the address is answered.
    let out = s.mf().run(&["list-task-definitions"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("rebound"));
    for host in [addr.clone(), format!("localhost:{port}")] {
        let reply = with_host(&addr, &host, "POST", "/", "ListClusters");
        assert!(reply.starts_with("HTTP/1.1 200"), "{host}: {reply}");
    }
    drop(s);

    // With the default authentication too, and a name the operator allows.
    let s = Serve::start(&["--allowed-host", "ecs.lab"], &[]);
    let addr = s.addr();
    let reply = with_host(&addr, "rebound.example", "POST", "/", "RunTask");
    assert!(reply.starts_with("HTTP/1.1 421"), "{reply}");
    let reply = with_host(&addr, "ecs.lab", "POST", "/", "ListClusters");
    // Past the Host rule, to the signature check.
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains("MissingAuthenticationTokenException"),
        "{reply}"
    );
}

/// botocore signs a request (serve's key from `keys`), then `tamper` (Python, on the
/// prepared request `p`) changes it before it is sent; prints `{status, body}`.
fn signed_then(s: &Serve, prelude: &str, tamper: &str) -> serde_json::Value {
    let script = format!(
        r#"
import sys, json, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
ep, key, secret = sys.argv[1], sys.argv[2], sys.argv[3]
creds = Credentials(key, secret)
req = AWSRequest(method="POST", url=ep + "/", data=b'{{}}', headers={{
    "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
    "Content-Type": "application/x-amz-json-1.1"}})
{prelude}
p = req.prepare()
{tamper}
body = p.body.encode() if isinstance(p.body, str) else p.body
r = urllib.request.Request(p.url, data=body, headers=dict(p.headers), method="POST")
try:
    with urllib.request.urlopen(r) as resp:
        print(json.dumps({{"status": resp.status, "body": json.loads(resp.read())}}))
except urllib.error.HTTPError as e:
    print(json.dumps({{"status": e.code, "body": json.loads(e.read())}}))
"#
    );
    let mut c = Command::new(tool("python3"));
    common::util::no_proxy(&mut c);
    let out = c
        .args(["-c", &script, &s.endpoint, ID, SECRET])
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{tamper}: {v}");
    v
}

/// A captured signature replayed with another operation or another body is refused, and
/// so are a signature that leaves the operation out or the body out (UNSIGNED-PAYLOAD),
/// with AWS's error names; nothing reaches the core.
#[test]
fn replayed_signatures_and_unsigned_operations_or_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(&["--credentials-file", &keys_file(dir.path())], &[]);
    let sign = "SigV4Auth(creds, 'ecs', 'us-east-1').add_auth(req)";
    // As signed: answered.
    let v = signed_then(&s, sign, "");
    assert_eq!(v["status"], 200, "{v}");
    // The same signature, another operation (CreateCluster with the same body: the
    // cluster `default`).
    let v = signed_then(
        &s,
        sign,
        "p.headers['X-Amz-Target'] = 'AmazonEC2ContainerServiceV20141113.CreateCluster'",
    );
    assert_eq!(v["status"], 400, "{v}");
    assert_eq!(v["body"]["__type"], "InvalidSignatureException", "{v}");
    // The same signature, another body.
    let v = signed_then(&s, sign, "p.body = b'{\"maxResults\":1}'");
    assert_eq!(v["body"]["__type"], "InvalidSignatureException", "{v}");
    // Signed without X-Amz-Target, which is added afterwards.
    let v = signed_then(
        &s,
        &format!(
            "t = req.headers['X-Amz-Target']\ndel req.headers['X-Amz-Target']\n{sign}\nreq.headers['X-Amz-Target'] = t"
        ),
        "p.headers['X-Amz-Target'] = 'AmazonEC2ContainerServiceV20141113.CreateCluster'",
    );
    assert_eq!(v["body"]["__type"], "IncompleteSignatureException", "{v}");
    assert!(
        v["body"]["message"]
            .as_str()
            .unwrap()
            .contains("'X-Amz-Target'"),
        "{v}"
    );
    // Signed over UNSIGNED-PAYLOAD (S3's option): any body could go with it.
    let v = signed_then(
        &s,
        &format!(
            "req.headers['X-Amz-Content-SHA256'] = 'UNSIGNED-PAYLOAD'\n\
             SigV4Auth.payload = lambda self, request: 'UNSIGNED-PAYLOAD'\n{sign}"
        ),
        "p.body = b'{\"maxResults\":1}'",
    );
    assert_eq!(v["body"]["__type"], "InvalidSignatureException", "{v}");
    assert!(
        v["body"]["message"]
            .as_str()
            .unwrap()
            .contains("UNSIGNED-PAYLOAD"),
        "{v}"
    );
    let out = aws(&s.endpoint, ID, SECRET, 0, &["list-clusters"]);
    assert!(ok(&out)["clusterArns"].as_array().unwrap().is_empty());
}

/// A local `environmentFiles` path is refused over the API — at RegisterTaskDefinition, and
/// at RunTask or CreateService of a definition the local CLI registered with one — with a
/// ClientException naming the member; the local CLI (root on this host) keeps local paths.
#[test]
fn local_environment_files_are_refused_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(&["--credentials-file", &keys_file(dir.path())], &[]);
    let def = |family: &str| {
        format!(
            r#"{{"family":"{family}","containerDefinitions":[{{"name":"app",
              "image":"public.ecr.aws/docker/library/busybox:1.36","memory":64,
              "environmentFiles":[{{"value":"/etc/shadow","type":"s3"}}]}}]}}"#
        )
    };
    let file = dir.path().join("envfile.json");
    std::fs::write(&file, def("envfile-api")).unwrap();
    let input = format!("file://{}", file.display());
    let err = refused(
        &aws(
            &s.endpoint,
            ID,
            SECRET,
            0,
            &["register-task-definition", "--cli-input-json", &input],
        ),
        "ClientException",
    );
    assert!(
        err.contains("containerDefinitions[0].environmentFiles[0].value \"/etc/shadow\""),
        "{err}"
    );
    // The local CLI registers it; RunTask over the API of it is refused all the same.
    std::fs::write(&file, def("envfile-local")).unwrap();
    let out = s
        .mf()
        .run(&["register-task-definition", "--cli-input-json", &input]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = refused(
        &aws(
            &s.endpoint,
            ID,
            SECRET,
            0,
            &["run-task", "--task-definition", "envfile-local"],
        ),
        "ClientException",
    );
    assert!(err.contains("environmentFiles[0].value"), "{err}");
    // A service of it, likewise (its scheduler would run such tasks).
    let err = refused(
        &aws(
            &s.endpoint,
            ID,
            SECRET,
            0,
            &[
                "create-service",
                "--service-name",
                "envfile",
                "--task-definition",
                "envfile-local",
                "--desired-count",
                "1",
            ],
        ),
        "ClientException",
    );
    assert!(err.contains("environmentFiles[0].value"), "{err}");
    let out = aws(&s.endpoint, ID, SECRET, 0, &["list-tasks"]);
    assert!(ok(&out)["taskArns"].as_array().unwrap().is_empty());
    let out = aws(&s.endpoint, ID, SECRET, 0, &["list-task-definitions"]);
    let defs = ok(&out)["taskDefinitionArns"].to_string();
    assert!(!defs.contains("envfile-api"), "{defs}");
}
