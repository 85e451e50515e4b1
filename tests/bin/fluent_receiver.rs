//! A minimal Fluent forward receiver for the FireLens tests (tests/run_task_firelens.rs):
//! it runs *inside* the log router container in place of Fluent Bit (none installs from
//! the registries reachable here), listens where the generated configuration tells Fluent
//! Bit to (the unix socket `/var/run/fluent.sock`, TCP 127.0.0.1:24224), decodes the
//! forward protocol's msgpack entries and prints each record as a JSON line on stdout,
//! which the test reads with `minifargate logs`.
//!
//! First it prints what it finds at the config paths the agent mounts, so the test sees
//! the generated file from inside the container; each record is printed with the time it
//! was received (`received`, seconds since the epoch) besides the entry's own.
//!
//! Ref: fluent/fluentd wiki "Forward Protocol Specification v1": Message mode
//! `[tag, time, record, option?]`, Forward mode `[tag, [[time, record], ...], option?]`,
//! PackedForward `[tag, bin, option?]`; EventTime is ext type 0 (u32 seconds, u32 nanos).

use rmpv::Value;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};

const SOCKET: &str = "/var/run/fluent.sock";
/// The generated file's mount points, and the S3 file's (`S3ConfigPathFluentbit`/`…Fluentd`).
const CONFIGS: [&str; 4] = [
    "/fluent-bit/etc/fluent-bit.conf",
    "/fluentd/etc/fluent.conf",
    "/fluent-bit/etc/external.conf",
    "/fluentd/etc/external.conf",
];

fn json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => i
            .as_i64()
            .map(Into::into)
            .or_else(|| i.as_u64().map(Into::into))
            .unwrap_or(serde_json::Value::Null),
        Value::F32(f) => (*f as f64).into(),
        Value::F64(f) => (*f).into(),
        Value::String(s) => s.as_str().unwrap_or_default().into(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned().into(),
        Value::Array(a) => a.iter().map(json).collect(),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Value::Ext(0, b) if b.len() == 8 => {
            let s = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            (s as f64 + n as f64 / 1e9).into()
        }
        Value::Ext(t, _) => format!("ext{t}").into(),
    }
}

fn print(out: &Mutex<std::io::Stdout>, line: serde_json::Value) {
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn entries(tag: &str, time: &Value, record: &Value, via: &str, out: &Mutex<std::io::Stdout>) {
    let received = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    print(
        out,
        serde_json::json!({"tag": tag, "time": json(time), "record": json(record), "via": via,
                           "received": received}),
    );
}

/// Reads forward messages from one connection until it closes.
fn serve(mut conn: impl std::io::Read, via: &str, out: &Mutex<std::io::Stdout>) {
    while let Ok(v) = rmpv::decode::read_value(&mut conn) {
        let Some(a) = v.as_array() else { continue };
        let tag = a.first().and_then(Value::as_str).unwrap_or_default();
        match a.get(1) {
            // Forward mode: a list of [time, record].
            Some(Value::Array(list)) => {
                for e in list {
                    if let Some([t, r]) = e.as_array().map(Vec::as_slice) {
                        entries(tag, t, r, via, out);
                    }
                }
            }
            // PackedForward: a stream of [time, record] in a bin/str.
            Some(Value::Binary(b)) => {
                let mut r = b.as_slice();
                while let Ok(e) = rmpv::decode::read_value(&mut r) {
                    if let Some([t, rec]) = e.as_array().map(Vec::as_slice) {
                        entries(tag, t, rec, via, out);
                    }
                }
            }
            Some(t) => {
                if let Some(r) = a.get(2) {
                    entries(tag, t, r, via, out);
                }
            }
            None => {}
        }
    }
}

/// `--delay-ms N`: wait before listening (a router that is slow to start);
/// `--no-listen`: never listen (a router that never comes up).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    // The environment, for the config variables of secret options (`<name>_<index>`).
    let env: serde_json::Map<String, serde_json::Value> =
        std::env::vars().map(|(k, v)| (k, v.into())).collect();
    print(&out, serde_json::json!({ "env": env }));
    if args.iter().any(|a| a == "--no-listen") {
        print(&out, serde_json::json!({"listening": []}));
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    if let Some(ms) = args
        .iter()
        .position(|a| a == "--delay-ms")
        .and_then(|i| args.get(i + 1)?.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    for path in CONFIGS {
        if let Ok(text) = std::fs::read_to_string(path) {
            print(
                &out,
                serde_json::json!({"config_path": path, "config": text}),
            );
        }
    }
    let _ = std::fs::remove_file(SOCKET);
    let unix = UnixListener::bind(SOCKET).unwrap_or_else(|e| panic!("bind {SOCKET}: {e}"));
    let tcp = std::net::TcpListener::bind("127.0.0.1:24224").expect("bind 127.0.0.1:24224");
    print(
        &out,
        serde_json::json!({"listening": [SOCKET, "127.0.0.1:24224"]}),
    );
    let o = out.clone();
    std::thread::spawn(move || {
        for c in tcp.incoming().flatten() {
            let o = o.clone();
            std::thread::spawn(move || serve(c, "tcp", &o));
        }
    });
    for c in unix.incoming().flatten() {
        let o = out.clone();
        std::thread::spawn(move || serve(c, "unix", &o));
    }
}
