//! exec and the console's task views across boxes (issue 38, "logs/exec across boxes";
//! docs/cluster.md "exec across boxes", "The console across boxes"): a task placed by
//! `serve --cluster` on box B, reached from another box's root (`minifargate exec --etcd`,
//! `execute-command --etcd`) through B's agent, and the console's views of it answered
//! through serve by that agent. The agent's endpoint takes only signed execs, each once.
//! Every process is stopped by its pid and every directory removed, also when a test
//! fails.

use crate::common;

use common::api::Api;
use common::cli::Mf;
use common::cluster::{Agent, serve_with};
use common::etcd::Etcd;
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// One busybox container that sleeps, awsvpc.
const SLEEPER: &str = r#"{
  "family": "xbox-sleeper",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "256",
  "memory": "128",
  "containerDefinitions": [{
    "name": "main",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sh", "-c", "echo sleeper up; sleep 300"],
    "stopTimeout": 2,
    "essential": true
  }]
}"#;

/// etcd, `serve --cluster` and box B (an agent with a `ttl` s lease), with SLEEPER
/// registered.
fn cluster(ttl: u64) -> (Etcd, Api, Agent) {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let b = Agent::start_for(&etcd, &api, ttl, &[]);
    b.endpoint();
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    let def = api.file("sleeper.json", SLEEPER);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    (etcd, api, b)
}

/// Another box's root, with the operator's certificates for etcd (MINIFARGATE_ETCD_CERTS,
/// which `exec --etcd` and `logs --etcd` read as --etcd-certs).
fn operator(etcd: &Etcd) -> Mf {
    let mut a = Mf::new();
    if let Some(p) = etcd.pki() {
        a.set_env("MINIFARGATE_ETCD_CERTS", p.join("admin"));
    }
    a
}

/// A SLEEPER task placed on box B, once RUNNING: its id.
fn run_sleeper(api: &Api) -> String {
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "xbox-sleeper",
        "--launch-type",
        "EC2",
    ]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(90, "the task RUNNING", || {
        (status(api, &arn) == "RUNNING").then_some(())
    });
    arn.rsplit('/').next().unwrap().to_string()
}

fn status(api: &Api, task: &str) -> String {
    let v = api.aws_json(&["describe-tasks", "--tasks", task]);
    v["tasks"][0]["lastStatus"]
        .as_str()
        .unwrap_or_default()
        .into()
}

/// `minifargate ARGS` from box A's root (no task of its own, no agent: an operator),
/// with `stdin` piped in.
fn from_a(a: &Mf, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = a.cmd();
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut w = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = w.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    eprintln!(
        "$ minifargate {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The cluster's token, as the agents read it from etcd.
fn token(etcd: &Etcd) -> Vec<u8> {
    let out = etcd.etcdctl(&["get", "/minifargate/v1/token", "--print-value-only"]);
    assert!(out.status.success());
    text(&out.stdout).trim().as_bytes().to_vec()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `MS:HEX`: HMAC-SHA256 of the time, the call and the body (docs/cluster.md).
fn signature(token: &[u8], ms: i64, call: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(token).unwrap();
    m.update(format!("{ms}\n{call}\n").as_bytes());
    m.update(body);
    format!("{ms}:{}", hex::encode(m.finalize().into_bytes()))
}

/// A raw connection to an agent's endpoint: TCP for `http://`, and for `https://` TLS by
/// `openssl s_client`, checking the endpoint's certificate (and its address) with
/// `etcd`'s cluster CA and presenting bundle `as_who`'s certificate (`serve`, `admin`,
/// `boxes/NAME`; none when None). Reads end when the agent closes (or after 20 s on TCP).
struct Raw {
    rd: Box<dyn Read>,
    wr: Box<dyn Write>,
    child: Option<std::process::Child>,
}

impl Raw {
    fn connect(etcd: &Etcd, endpoint: &str) -> Raw {
        Raw::connect_as(etcd, endpoint, Some("serve"))
    }

    fn connect_as(etcd: &Etcd, endpoint: &str, as_who: Option<&str>) -> Raw {
        if let Some(addr) = endpoint.strip_prefix("https://") {
            let pki = etcd
                .pki()
                .expect("an https endpoint in a cluster with a CA");
            let ip = addr.rsplit_once(':').unwrap().0;
            let mut cmd = Command::new("openssl");
            cmd.args([
                "s_client",
                "-quiet",
                "-verify_return_error",
                "-connect",
                addr,
            ])
            .arg("-CAfile")
            .arg(pki.join("ca.crt"))
            .args(["-verify_ip", ip]);
            if let Some(who) = as_who {
                cmd.arg("-cert")
                    .arg(pki.join(who).join("client.crt"))
                    .arg("-key")
                    .arg(pki.join(who).join("client.key"));
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let (rd, wr) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
            return Raw {
                rd: Box::new(rd),
                wr: Box::new(wr),
                child: Some(child),
            };
        }
        let addr = endpoint.trim_start_matches("http://");
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw {
            rd: Box::new(s.try_clone().unwrap()),
            wr: Box::new(s),
            child: None,
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw exec request to an agent's endpoint (`sig`: the signature header, if any): the
/// status line of the answer and, after a 101, everything the stream carried until the
/// agent closed it.
fn raw_exec(etcd: &Etcd, endpoint: &str, body: &[u8], sig: Option<&str>) -> (String, Vec<u8>) {
    raw_exec_as(etcd, endpoint, body, sig, Some("serve"))
}

/// [`raw_exec`] over TLS as bundle `as_who` ([`Raw::connect_as`]).
fn raw_exec_as(
    etcd: &Etcd,
    endpoint: &str,
    body: &[u8],
    sig: Option<&str>,
    as_who: Option<&str>,
) -> (String, Vec<u8>) {
    use base64::Engine;
    let addr = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let mut raw = Raw::connect_as(etcd, endpoint, as_who);
    let mut req = format!(
        "GET /v1/exec HTTP/1.1\r\nHost: {addr}\r\nConnection: upgrade\r\nUpgrade: \
         minifargate-exec\r\nx-minifargate-exec: {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(body)
    );
    if let Some(sig) = sig {
        req.push_str(&format!("x-minifargate-signature: {sig}\r\n"));
    }
    req.push_str("\r\n");
    // A refused handshake: s_client is gone, its pipe closed.
    let _ = raw
        .wr
        .write_all(req.as_bytes())
        .and_then(|()| raw.wr.flush());
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match raw.rd.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n");
        // A refusal is a JSON body with a Content-Length: read up to the end of it.
        if let Some(end) = head_end {
            let head = text(&all[..end]).to_lowercase();
            if !head.starts_with("http/1.1 101")
                && let Some(len) = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|l| l.trim().parse::<usize>().ok())
                && all.len() >= end + 4 + len
            {
                break;
            }
        }
    }
    let line = text(&all).lines().next().unwrap_or_default().to_string();
    (line, all)
}

#[test]
fn exec_reaches_a_task_on_another_box_through_its_agent_which_takes_only_signed_execs_once() {
    let (etcd, api, mut b) = cluster(3);
    let id = run_sleeper(&api);
    let ep = etcd.endpoint();
    let a = operator(&etcd);
    // stdout, stderr and the exit code of the command, from another box's root.
    let out = from_a(
        &a,
        &[
            "exec",
            "--etcd",
            &ep,
            &id,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    // What the hop costs: `exec -- true` from box A (etcd look-up, signed request, stream)
    // against the same on box B itself, five of each, medians printed.
    let median = |mf: &Mf, args: &[&str]| {
        let mut ms: Vec<f64> = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                let out = mf.cmd().args(args).output().unwrap();
                assert!(out.status.success(), "{out:?}");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[2]
    };
    let remote = median(&a, &["exec", "--etcd", &ep, &id, "--", "true"]);
    let local = median(&b.mf, &["exec", &id, "--", "true"]);
    eprintln!(
        "exec -- true: {remote:.1} ms from another box, {local:.1} ms on the box (medians of 5)"
    );
    // Piped stdin (-i), 300,000 bytes of it, and the user and environment options.
    let input: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = from_a(
        &a,
        &[
            "exec",
            "-i",
            "--etcd",
            &ep,
            &id,
            "-u",
            "65534",
            "-e",
            "GREETING=hi",
            "--",
            "sh",
            "-c",
            "wc -c; id -u; echo $GREETING",
        ],
        &input,
    );
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(lines, ["300000", "65534", "hi"]);
    // Without -i the command's stdin is at its end at once.
    let out = from_a(
        &a,
        &[
            "exec",
            "--etcd",
            &ep,
            &id,
            "--",
            "sh",
            "-c",
            "cat; echo end",
        ],
        b"not passed",
    );
    assert_eq!(text(&out.stdout), "end\n");
    // A command that is not there: 127, as on one box.
    let out = from_a(&a, &["exec", "--etcd", &ep, &id, "--", "no-such-cmd"], b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("no-such-cmd"), "{out:?}");
    // -it under a terminal (util-linux's `script` gives us one, 33 rows × 101 columns):
    // the command gets a pty of that size, typed input reaches it, and the terminal
    // resized to 40 × 120 while it runs (SIGWINCH) resizes its pty.
    let mut c = a.cmd();
    c.args(["exec", "-it", "--etcd", &ep, &id, "--", "sh", "-c"])
        .arg("tty; stty size; read line; echo got:$line; sleep 3; stty size");
    let line = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|s| shlex::try_quote(&s.to_string_lossy()).unwrap().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script
        .args([
            "-qec",
            &format!("stty rows 33 cols 101; (sleep 4; stty rows 40 cols 120 </dev/tty) & {line}"),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut w = child.stdin.take().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            w.write_all(b"typed\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let shown = text(&out.stdout);
    eprintln!("script: {}: {shown}", out.status);
    assert!(shown.contains("/dev/pts/"), "{shown}");
    assert!(shown.contains("33 101"), "{shown}");
    assert!(shown.contains("got:typed"), "{shown}");
    assert!(shown.contains("40 120"), "{shown}");
    assert_eq!(out.status.code(), Some(0));
    // A caller that goes away (kill -9) takes its command with it, as on one box.
    let mut gone = a
        .cmd()
        .args(["exec", "--etcd", &ep, &id, "--", "sleep", "171"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Seen from the host: the task's processes running `sleep 171`.
    let sleeping = || {
        common::leaks::task_processes(&id).into_iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00171\x00")
        })
    };
    api.wait_for(20, "the exec'd sleep running", || sleeping().then_some(()));
    gone.kill().unwrap();
    gone.wait().unwrap();
    api.wait_for(20, "the exec'd sleep killed", || {
        (!sleeping()).then_some(())
    });
    // execute-command as the AWS CLI's options say it.
    let out = from_a(
        &a,
        &[
            "execute-command",
            "--etcd",
            &ep,
            "--task",
            &id,
            "--interactive",
            "--command",
            "sh -c 'echo via execute-command; exit 4'",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stdout), "via execute-command\n");

    // The endpoint: over TLS it knows its caller by its certificate (serve's or the
    // operator's run an exec; none, or a box's, is refused at the handshake: root on one
    // box reaches no other box's tasks); without TLS nothing unsigned or badly signed runs
    // and a signed exec runs once.
    let endpoint = b.endpoint();
    let body = |cmd: &str, nonce: &str| {
        serde_json::json!({"task": id, "command": ["sh", "-c", cmd], "nonce": nonce})
            .to_string()
            .into_bytes()
    };
    if endpoint.starts_with("https://") {
        etcd.add_box("other");
        for who in [None, Some("boxes/other"), Some("boxes/tests")] {
            let (line, all) = raw_exec_as(
                &etcd,
                &endpoint,
                &body("echo refused >> /tmp/ran", "t1"),
                None,
                who,
            );
            assert!(
                !line.starts_with("HTTP/1.1"),
                "{who:?}: no HTTP answer: {line}: {}",
                text(&all)
            );
        }
        for (who, n) in [("serve", "t2"), ("admin", "t3")] {
            let (line, all) = raw_exec_as(
                &etcd,
                &endpoint,
                &body(&format!("echo {who} >> /tmp/ran"), n),
                None,
                Some(who),
            );
            assert!(line.contains(" 101 "), "{who}: {line}: {}", text(&all));
        }
        let out = from_a(
            &a,
            &["exec", "--etcd", &ep, &id, "--", "cat", "/tmp/ran"],
            b"",
        );
        assert_eq!(
            text(&out.stdout),
            "serve\nadmin\n",
            "only serve's and the operator's execs ran"
        );
        let refused = b.log_text().matches("refused at the handshake").count();
        assert!(
            refused >= 2,
            "the agent logs each box's certificate refused:\n{}",
            b.log_text()
        );
        // The token is no part of it: another one in etcd changes nothing.
        assert!(
            etcd.etcdctl(&["put", "/minifargate/v1/token", "0badc0de"])
                .status
                .success()
        );
        let out = from_a(&a, &["exec", "--etcd", &ep, &id, "--", "true"], b"");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    } else {
        signed_execs_only_once(&etcd, &a, &b, &ep, &id, &endpoint, &body);
    }
    // A task that is not in the cluster.
    let out = from_a(
        &a,
        &[
            "exec",
            "--etcd",
            &ep,
            "0123456789abcdef0123456789abcdef",
            "--",
            "true",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("task 0123456789abcdef0123456789abcdef is not in the cluster's etcd"),
        "{out:?}"
    );
    // A STOPPED task.
    api.aws_json(&["stop-task", "--task", &id]);
    api.wait_for(60, "the task STOPPED", || {
        (status(&api, &id) == "STOPPED").then_some(())
    });
    let out = from_a(&a, &["exec", "--etcd", &ep, &id, "--", "true"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("task {id} is STOPPED")),
        "{out:?}"
    );
    // A task whose box's agent is gone.
    let id2 = run_sleeper(&api);
    // An exec running when its box's agent dies: the caller says the stream ended (exit
    // 1), and the command dies with the agent.
    let running = a
        .cmd()
        .args(["exec", "--etcd", &ep, &id2, "--", "sleep", "172"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || {
        common::leaks::task_processes(&id2).into_iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00172\x00")
        })
    };
    api.wait_for(20, "the exec'd sleep running", || sleeping().then_some(()));
    b.kill();
    let out = running.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("ended before the command's exit code"),
        "{out:?}"
    );
    api.wait_for(20, "the exec'd sleep killed with the agent", || {
        (!sleeping()).then_some(())
    });
    let instance = api.aws_json(&["list-container-instances"])["containerInstanceArns"][0]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_for(20, "agentConnected false", || {
        let v = api.aws_json(&[
            "describe-container-instances",
            "--container-instances",
            &instance,
        ]);
        (v["containerInstances"][0]["agentConnected"] == false).then_some(())
    });
    let out = from_a(&a, &["exec", "--etcd", &ep, &id2, "--", "true"], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("task {id2} runs on container instance"))
            && stderr.contains("whose agent is not connected"),
        "{stderr}"
    );
    // Nothing of either task, or of the execs in them, is left on box B.
    b.mf.kill_supervisors();
    common::leaks::assert_no_leaks(&b.mf, &[&id, &id2], &[]);
}

/// Without TLS: nothing unsigned or badly signed runs; a signed exec runs once; a caller
/// whose etcd holds another token gets the agent's 403, named as such.
fn signed_execs_only_once(
    etcd: &Etcd,
    a: &Mf,
    b: &Agent,
    ep: &str,
    id: &str,
    endpoint: &str,
    body: &dyn Fn(&str, &str) -> Vec<u8>,
) {
    let unsigned = body("echo unsigned >> /tmp/ran", "n1");
    let (line, all) = raw_exec(etcd, endpoint, &unsigned, None);
    assert!(line.contains(" 403 "), "{line}: {}", text(&all));
    let other = signature(b"not the cluster's token", now_ms(), "exec", &unsigned);
    let (line, _) = raw_exec(etcd, endpoint, &unsigned, Some(&other));
    assert!(line.contains(" 403 "), "{line}");
    let token = token(etcd);
    let stale = signature(&token, now_ms() - 120_000, "exec", &unsigned);
    let (line, _) = raw_exec(etcd, endpoint, &unsigned, Some(&stale));
    assert!(line.contains(" 403 "), "{line}");
    // Signed for another body: refused too.
    let signed_other = signature(&token, now_ms(), "exec", &body("true", "n2"));
    let (line, _) = raw_exec(etcd, endpoint, &unsigned, Some(&signed_other));
    assert!(line.contains(" 403 "), "{line}");
    // Well signed: it runs (the stream ends with its exit code) …
    let once = body("echo once >> /tmp/ran", "n3");
    let sig = signature(&token, now_ms(), "exec", &once);
    let (line, all) = raw_exec(etcd, endpoint, &once, Some(&sig));
    assert!(line.contains(" 101 "), "{line}: {}", text(&all));
    let exit_frame = [3u8, 0, 0, 0, 4, 0, 0, 0, 0];
    assert!(all.ends_with(&exit_frame), "{all:?}");
    // … once: the same request again is a replay.
    let (line, all) = raw_exec(etcd, endpoint, &once, Some(&sig));
    assert!(line.contains(" 403 "), "{line}");
    assert!(text(&all).contains("replay"), "{}", text(&all));
    let out = from_a(a, &["exec", "--etcd", ep, id, "--", "cat", "/tmp/ran"], b"");
    assert_eq!(
        text(&out.stdout),
        "once\n",
        "only the signed exec ran, once"
    );
    let refused = b.log_text().matches("refused").count();
    assert!(
        refused >= 5,
        "the agent logs each refusal:\n{}",
        b.log_text()
    );

    // A caller whose etcd holds another token (another cluster's etcd, say): the agent's
    // 403, named as such.
    let good = text(&token);
    assert!(
        etcd.etcdctl(&["put", "/minifargate/v1/token", "0badc0de"])
            .status
            .success()
    );
    let out = from_a(a, &["exec", "--etcd", ep, id, "--", "true"], b"");
    assert!(
        etcd.etcdctl(&["put", "/minifargate/v1/token", &good])
            .status
            .success()
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("task {id}: the agent of container instance"))
            && text(&out.stderr)
                .contains("refused the request (HTTP 403): the signature does not match"),
        "{out:?}"
    );
}

/// A console view through serve (HTTP Basic with serve's key, as the page signs in).
pub(crate) fn console(api: &Api, path: &str) -> (u16, Value) {
    let (user, secret) = api.credentials();
    let mut c = Command::new("curl");
    common::util::no_proxy(&mut c);
    let out = c
        .args(["-s", "--noproxy", "*", "-w", "\n%{http_code}", "--user"])
        .arg(format!("{user}:{secret}"))
        .arg(format!("{}{path}", api.endpoint))
        .output()
        .unwrap();
    let s = text(&out.stdout);
    let (body, code) = s.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn the_console_s_task_views_of_a_task_on_another_box_are_answered_by_its_agent() {
    let (_etcd, api, mut b) = cluster(3);
    let id = run_sleeper(&api);
    // serve's own store has no such task: each view comes from box B's agent.
    let (code, v) = console(&api, &format!("/console/api/tasks/{id}/timeline"));
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["taskId"], id.as_str());
    assert_eq!(v["lastStatus"], "RUNNING");
    assert_eq!(v["containers"], serde_json::json!(["main"]));
    let (code, v) = console(&api, &format!("/console/api/tasks/{id}/stats"));
    assert_eq!(code, 200, "{v:#}");
    assert!(
        v["containers"][0]["memUsage"].as_u64().unwrap() > 0,
        "{v:#}"
    );
    let (code, v) = console(&api, &format!("/console/api/tasks/{id}/isolation"));
    assert_eq!(code, 200, "{v:#}");
    assert!(v.to_string().contains(&id), "{v:#}");
    let v = api.wait_for(30, "the task's first line", || {
        let (code, v) = console(
            &api,
            &format!("/console/api/tasks/{id}/logs?container=main"),
        );
        assert_eq!(code, 200, "{v:#}");
        (!v["lines"].as_array().unwrap().is_empty()).then_some(v)
    });
    assert_eq!(v["lines"][0]["log"], "sleeper up");
    // `since` (the page's last line time) travels as the page wrote it: only newer lines.
    let last = v["lines"][0]["time"].as_str().unwrap().to_string();
    let (code, newer) = console(
        &api,
        &format!("/console/api/tasks/{id}/logs?container=main&since={last}"),
    );
    assert_eq!(code, 200, "{newer:#}");
    assert_eq!(
        newer["lines"],
        serde_json::json!([v["lines"][0]]),
        "{newer:#}"
    );
    // A task no box has: a 404 naming it, not a blank page.
    let (code, v) = console(
        &api,
        "/console/api/tasks/0123456789abcdef0123456789abcdef/timeline",
    );
    assert_eq!(code, 404);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not in the cluster's etcd"),
        "{v:#}"
    );
    // Its box's agent gone: a 502 naming the instance and why.
    b.kill();
    api.wait_for(20, "agentConnected false", || {
        let arns = api.aws_json(&["list-container-instances"]);
        let arn = arns["containerInstanceArns"][0]
            .as_str()
            .unwrap()
            .to_string();
        let v = api.aws_json(&[
            "describe-container-instances",
            "--container-instances",
            &arn,
        ]);
        (v["containerInstances"][0]["agentConnected"] == false).then_some(())
    });
    let (code, v) = console(&api, &format!("/console/api/tasks/{id}/timeline"));
    assert_eq!(code, 502, "{v:#}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("whose agent is not connected"),
        "{v:#}"
    );
}

#[test]
fn logs_of_a_task_on_another_box_come_from_its_agent_and_follow_it_until_it_stops() {
    let (etcd, api, _b) = cluster(5);
    let ep = etcd.endpoint();
    let counter = SLEEPER.replace("xbox-sleeper", "xbox-counter").replace(
        r#""command": ["sh", "-c", "echo sleeper up; sleep 300"]"#,
        r#""command": ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 1; done; echo oops >&2"]"#,
    );
    let def = api.file("counter.json", &counter);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "xbox-counter",
        "--launch-type",
        "EC2",
    ]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let a = operator(&etcd);
    // Followed from box A at once (before the box has made the task): every line, both
    // streams, then it returns when the task stops.
    let out = from_a(&a, &["logs", "--etcd", &ep, "--follow", &id], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "line 1\nline 2\nline 3\noops\n");
    assert_eq!(status(&api, &arn), "STOPPED");
    // The last line with its time, and the lines newer than a time.
    let out = from_a(&a, &["logs", "--etcd", &ep, "--tail", "1", "-t", &id], b"");
    let last = text(&out.stdout);
    let (time, line) = last.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "oops", "{last}");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{last}");
    let out = from_a(&a, &["logs", "--etcd", &ep, "--since", time, &id], b"");
    assert_eq!(text(&out.stdout), "", "nothing newer than the last line");
    // A task in no record: an error naming it.
    let out = from_a(
        &a,
        &["logs", "--etcd", &ep, "0123456789abcdef0123456789abcdef"],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("0123456789abcdef0123456789abcdef"),
        "{}",
        text(&out.stderr)
    );
}

/// The agent's endpoint has serve's bounds (docs/security.md "Bounds"): a client that
/// never finishes its request head is cut off, a body over 256 KiB is refused before it is
/// read (and before any signature is looked at).
#[test]
fn the_agent_s_endpoint_cuts_off_a_slow_client_and_refuses_an_oversized_body() {
    let etcd = Etcd::start();
    // A serve leads: it binds the box's instance to it, so the box registers.
    let _api = serve_with(&etcd, &[]);
    let b = Agent::start(&etcd, 5, &[]);
    let endpoint = b.endpoint();

    // Slow-loris: half a request head, then nothing.
    let mut slow = Raw::connect(&etcd, &endpoint);
    slow.wr
        .write_all(b"GET /v1/exec HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.wr.flush().unwrap();
    let start = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = slow.rd.read_to_end(&mut rest);
    let took = start.elapsed();
    eprintln!("a slow client cut off after {took:?}: {read:?}");
    assert!(read.is_ok(), "the agent closed the connection: {read:?}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "cut off at serve's 10 s header timeout: {took:?}"
    );

    // A body over 256 KiB: 413 from its Content-Length, nothing read.
    let mut big = Raw::connect(&etcd, &endpoint);
    big.wr
        .write_all(
            b"POST /v1/logs/GetLogEvents HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\
          Connection: close\r\n\r\n{",
        )
        .unwrap();
    big.wr.flush().unwrap();
    let mut answer = String::new();
    let _ = big.rd.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A well-formed request from no one: over TLS, without a certificate, no HTTP answer;
    // without TLS, refused for its signature.
    if endpoint.starts_with("https://") {
        let mut nobody = Raw::connect_as(&etcd, &endpoint, None);
        let _ = nobody
            .wr
            .write_all(b"POST /v1/logs/GetLogEvents HTTP/1.1\r\nHost: x\r\n\r\n");
        let _ = nobody.wr.flush();
        let mut answer = String::new();
        let _ = nobody.rd.read_to_string(&mut answer);
        assert!(!answer.contains("HTTP/1.1"), "{answer}");
        return;
    }
    let mut unsigned = Raw::connect(&etcd, &endpoint);
    unsigned
        .wr
        .write_all(
            b"POST /v1/logs/GetLogEvents HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\
              Connection: close\r\n\r\n{}",
        )
        .unwrap();
    unsigned.wr.flush().unwrap();
    let mut answer = String::new();
    let _ = unsigned.rd.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

/// issue 54: the boxes' traffic has integrity and secrecy, not only a signed request: a
/// box with its bundle (`cluster add-box`) serves its endpoint over TLS with its own
/// certificate, which only the cluster's CA vouches for. A plain-HTTP client and a client
/// that trusts the public CAs only are refused before any route; so is one that trusts
/// the cluster's CA but presents no certificate of it, or a box's: only serve's and the
/// operator's (their certificates' roles) reach the endpoint.
#[test]
fn the_agent_s_endpoint_speaks_tls_only_with_the_cluster_s_ca_and_to_serve_and_the_operator() {
    let etcd = Etcd::start();
    let Some(pki) = etcd.pki().map(std::path::Path::to_path_buf) else {
        eprintln!("MINIFARGATE_TEST_ETCD=plain: no cluster CA, nothing to check");
        return;
    };
    let _api = serve_with(&etcd, &[]);
    let b = Agent::start(&etcd, 5, &[]);
    let endpoint = b.endpoint();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let url = format!("{endpoint}/v1/logs/GetLogEvents");
    let curl = |args: &[&str], url: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(["-X", "POST", "-d", "{}"])
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout))
    };
    // Plain HTTP to the TLS port: no HTTP answer at all.
    let plain = url.replacen("https://", "http://", 1);
    let (code, status) = curl(&[], &plain);
    assert!(
        code != Some(0) && status == "000",
        "plain http: {code:?} {status}"
    );
    // The public CAs do not vouch for a box: curl refuses the certificate (60).
    let (code, status) = curl(&[], &url);
    assert_eq!(
        (code, status.as_str()),
        (Some(60), "000"),
        "without the cluster's CA"
    );
    // Another CA's client: the same.
    let other = tempfile::tempdir().unwrap();
    let mf = Mf::new();
    let made = mf.run(&[
        "cluster",
        "init",
        "--dir",
        &other.path().join("c").display().to_string(),
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let other_ca = other.path().join("c/ca.crt");
    let (code, _) = curl(&["--cacert", &other_ca.display().to_string()], &url);
    assert_eq!(code, Some(60), "with another cluster's CA");
    // The cluster's CA checks the box, and the box checks its caller: without a client
    // certificate, with another cluster's serve's, or with a box's of this cluster (root
    // on another box, or on this one), the handshake is refused (no HTTP status).
    let ca = pki.join("ca.crt").display().to_string();
    etcd.add_box("b");
    let with = |dir: std::path::PathBuf| {
        curl(
            &[
                "--cacert",
                &ca,
                "--cert",
                &dir.join("client.crt").display().to_string(),
                "--key",
                &dir.join("client.key").display().to_string(),
            ],
            &url,
        )
    };
    let (code, status) = curl(&["--cacert", &ca], &url);
    assert!(
        code != Some(0) && status == "000",
        "no client certificate: {code:?} {status}"
    );
    for dir in [
        other.path().join("c/serve"),
        pki.join("boxes/b"),
        pki.join("boxes/tests"),
    ] {
        let (code, status) = with(dir.clone());
        assert!(
            code != Some(0) && status == "000",
            "{}: {code:?} {status}",
            dir.display()
        );
    }
    // serve's and the operator's certificates: answered, no token's signature needed.
    for who in ["serve", "admin"] {
        let (code, status) = with(pki.join(who));
        assert_eq!((code, status.as_str()), (Some(0), "400"), "{who}");
    }
}
