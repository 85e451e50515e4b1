//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/kv/range`, `/v3/kv/put`,
//! `/v3/kv/txn`, `/v3/kv/deleterange`, `/v3/lease/grant`, `/v3/lease/keepalive`,
//! `/v3/lease/revoke`; keys and values base64, 64-bit numbers as strings), through the
//! reqwest already in the tree. Why the gateway and not the gRPC crate: docs/cluster.md
//! ("The etcd client"). Ref: etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/.
//!
//! Endpoints are tried in order: the first that answers is used until it stops answering
//! (a connection failure moves to the next; an answer from etcd, even an error, does not).
//! A write whose request may have reached etcd (a timeout or a reset after it was sent) is
//! never sent again: it ends in [`EtcdError::OutcomeUnknown`], and the caller reads back
//! what happened (docs/cluster.md "The etcd client"). Every call has a deadline, so a
//! stopped etcd is an error naming the endpoints, never a hang.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a connection attempt may take before the next endpoint is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A key read only for the revision in the answer's header.
const ROOT_PROBE: &str = "/minifargate";

/// TLS to etcd, named as etcdctl names its options.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// `--etcd-cacert`: the CA that signed etcd's server certificate.
    pub cacert: Option<PathBuf>,
    /// `--etcd-cert`: this client's certificate (etcd's `--client-cert-auth`).
    pub cert: Option<PathBuf>,
    /// `--etcd-key`: the private key of `cert`.
    pub key: Option<PathBuf>,
    /// `--etcd-insecure-plaintext`: a plain-http endpoint off loopback is allowed.
    pub insecure_plaintext: bool,
}

impl Tls {
    fn any(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// What went wrong talking to etcd: each names the endpoint and the call.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("--cluster {0:?}: name at least one etcd endpoint (e.g. http://127.0.0.1:2379)")]
    NoEndpoint(String),
    #[error("etcd endpoint {endpoint:?}: {why}")]
    BadEndpoint { endpoint: String, why: String },
    #[error(
        "etcd endpoint {0:?} is plain http off loopback: whoever reaches it reads the \
         cluster's token and can run any task on any box. Run etcd with client certificates \
         (`minifargate cluster init`, then https:// endpoints and --etcd-certs), or give \
         --etcd-insecure-plaintext on a network only the boxes reach"
    )]
    PlainRemote(String),
    #[error("etcd TLS: cannot use {path}: {why}")]
    Tls { path: String, why: String },
    #[error("etcd {endpoint}: {call} failed: {why}")]
    Unreachable {
        endpoint: String,
        call: &'static str,
        why: String,
    },
    #[error("no etcd endpoint answered {call}: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AllDown {
        call: &'static str,
        errors: Vec<EtcdError>,
    },
    /// The request may have been applied: it was sent, and no answer came back (a timeout,
    /// a connection reset). Sending it again could apply it twice: read back instead.
    #[error(
        "etcd {endpoint}: {call} sent but not answered ({why}): it may or may not have been \
         applied"
    )]
    OutcomeUnknown {
        endpoint: String,
        call: &'static str,
        why: String,
    },
    #[error("etcd {endpoint}: {call} refused (HTTP {status}): {message}")]
    Refused {
        endpoint: String,
        call: &'static str,
        status: u16,
        message: String,
    },
    /// A key holds what minifargate does not write there.
    #[error(transparent)]
    Undecodable(#[from] super::records::Undecodable),
    #[error("etcd {endpoint}: {call} answered what is not etcd's JSON: {why}")]
    Malformed {
        endpoint: String,
        call: &'static str,
        why: String,
    },
}

/// One key-value pair of a range answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
}

/// An etcd client over the v3 JSON gateway.
#[derive(Debug)]
pub struct Etcd {
    endpoints: Vec<String>,
    http: reqwest::Client,
    /// The same client without the overall deadline: a watch is one long response.
    streaming: reqwest::Client,
    /// The endpoint that answered last: tried first.
    current: AtomicUsize,
}

impl Etcd {
    /// A client for `endpoints` (comma-separated; `host:port` means http, or https when
    /// TLS is configured).
    pub fn new(endpoints: &str, tls: &Tls) -> Result<Etcd, EtcdError> {
        let scheme = if tls.any() { "https" } else { "http" };
        let mut list = Vec::new();
        for e in endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let url = if e.contains("://") {
                e.trim_end_matches('/').to_string()
            } else {
                format!("{scheme}://{e}")
            };
            let parsed = reqwest::Url::parse(&url).map_err(|err| EtcdError::BadEndpoint {
                endpoint: e.into(),
                why: err.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(EtcdError::BadEndpoint {
                    endpoint: e.into(),
                    why: "must be http://HOST:PORT or https://HOST:PORT".into(),
                });
            }
            if parsed.scheme() == "http" && !on_loopback(&parsed) {
                if !tls.insecure_plaintext {
                    return Err(EtcdError::PlainRemote(url));
                }
                tracing::warn!(
                    endpoint = %url,
                    "etcd over plain http off loopback (--etcd-insecure-plaintext): its \
                     traffic, the cluster's token included, can be read and changed on the way"
                );
            }
            list.push(url);
        }
        if list.is_empty() {
            return Err(EtcdError::NoEndpoint(endpoints.into()));
        }
        let http = client(tls, Some(CALL_TIMEOUT))?;
        let streaming = client(tls, None)?;
        Ok(Etcd {
            endpoints: list,
            http,
            streaming,
            current: AtomicUsize::new(0),
        })
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// One gateway call, with failover between the endpoints: a read ([`Resend::Yes`]) goes
    /// to the next endpoint on any failure, a write only when its request was not sent (a
    /// connection that could not be made).
    async fn call(&self, call: &'static str, body: Value) -> Result<Value, EtcdError> {
        // Renewing a lease twice is renewing it.
        let resend = if matches!(call, "/v3/kv/range" | "/v3/lease/keepalive") {
            Resend::Yes
        } else {
            Resend::OnlyUnsent
        };
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let endpoint = &self.endpoints[at];
            let sent = self
                .http
                .post(format!("{endpoint}{call}"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            let unreachable = |why: String| EtcdError::Unreachable {
                endpoint: endpoint.clone(),
                call,
                why,
            };
            let unknown = |why: String| {
                // The next call starts at the next endpoint: this one may be hung.
                self.current.store((at + 1) % n, Ordering::Relaxed);
                EtcdError::OutcomeUnknown {
                    endpoint: endpoint.clone(),
                    call,
                    why,
                }
            };
            let resp = match sent {
                Ok(r) => r,
                // Nothing reached etcd: any call may go to the next endpoint.
                Err(e) if e.is_connect() => {
                    errors.push(unreachable(crate::errors::error_chain(&e)));
                    continue;
                }
                Err(e) if resend == Resend::Yes => {
                    errors.push(unreachable(crate::errors::error_chain(&e)));
                    continue;
                }
                Err(e) => return Err(unknown(crate::errors::error_chain(&e))),
            };
            let status = resp.status();
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) if resend == Resend::Yes => {
                    errors.push(unreachable(crate::errors::error_chain(&e)));
                    continue;
                }
                Err(e) => return Err(unknown(crate::errors::error_chain(&e))),
            };
            self.current.store(at, Ordering::Relaxed);
            let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
            if !status.is_success() {
                let message = parsed
                    .ok()
                    .and_then(|v| {
                        v.get("message")
                            .or_else(|| v.get("error"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
                return Err(EtcdError::Refused {
                    endpoint: endpoint.clone(),
                    call,
                    status: status.as_u16(),
                    message,
                });
            }
            return parsed.map_err(|e| EtcdError::Malformed {
                endpoint: endpoint.clone(),
                call,
                why: e.to_string(),
            });
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            EtcdError::AllDown { call, errors }
        })
    }

    fn malformed(&self, call: &'static str, why: impl Into<String>) -> EtcdError {
        EtcdError::Malformed {
            endpoint: self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
                .clone(),
            call,
            why: why.into(),
        }
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self
            .call("/v3/kv/range", json!({ "key": B64.encode(key) }))
            .await?;
        Ok(self.kvs("/v3/kv/range", &v)?.into_iter().next())
    }

    /// Every key under `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
            )
            .await?;
        self.kvs("/v3/kv/range", &v)
    }

    fn kvs(&self, call: &'static str, v: &Value) -> Result<Vec<Kv>, EtcdError> {
        let mut out = Vec::new();
        for kv in v["kvs"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = kv["key"]
                .as_str()
                .and_then(|k| B64.decode(k).ok())
                .and_then(|k| String::from_utf8(k).ok())
                .ok_or_else(|| self.malformed(call, "a key that is not base64 UTF-8"))?;
            let value = match kv["value"].as_str() {
                Some(s) => B64
                    .decode(s)
                    .map_err(|_| self.malformed(call, "a value that is not base64"))?,
                None => Vec::new(),
            };
            out.push(Kv {
                key,
                value,
                mod_revision: number(&kv["mod_revision"]),
                lease: number(&kv["lease"]),
            });
        }
        Ok(out)
    }

    /// Puts `key` = `value`, attached to `lease` when given.
    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<(), EtcdError> {
        let mut body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if let Some(l) = lease {
            body["lease"] = json!(l.to_string());
        }
        self.call("/v3/kv/put", body).await.map(drop)
    }

    /// Puts `key` = `value` only if `key` does not exist (a transaction comparing its
    /// create revision with 0); whether it was put.
    pub async fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, EtcdError> {
        let k = B64.encode(key);
        let v = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": k, "target": "CREATE", "create_revision": "0", "result": "EQUAL"}],
                    "success": [{"request_put": {"key": k, "value": B64.encode(value)}}],
                }),
            )
            .await?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, EtcdError> {
        let v = self
            .call("/v3/kv/deleterange", json!({ "key": B64.encode(key) }))
            .await?;
        Ok(number(&v["deleted"]) > 0)
    }

    /// A lease of `ttl` seconds: its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", json!({ "TTL": ttl.to_string() }))
            .await?;
        match number(&v["ID"]) {
            0 => Err(self.malformed("/v3/lease/grant", "no lease ID in the answer")),
            id => Ok(id),
        }
    }

    /// Renews lease `id`: its TTL again, or `None` when it has expired (or was revoked).
    pub async fn keep_alive(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", json!({ "ID": id.to_string() }))
            .await?;
        Ok(match number(&v["result"]["TTL"]) {
            ttl if ttl > 0 => Some(ttl),
            _ => None,
        })
    }

    /// The keys (without values) under `prefix`, in key order.
    pub async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({
                    "key": B64.encode(prefix),
                    "range_end": B64.encode(prefix_end(prefix)),
                    "keys_only": true,
                }),
            )
            .await?;
        Ok(self
            .kvs("/v3/kv/range", &v)?
            .into_iter()
            .map(|kv| kv.key)
            .collect())
    }

    /// Puts `key` = `value` attached to `lease` only if `key` does not exist; whether it
    /// was put.
    pub async fn put_if_absent_with_lease(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<bool, EtcdError> {
        let k = B64.encode(key);
        let v = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": k, "target": "CREATE", "create_revision": "0", "result": "EQUAL"}],
                    "success": [{"request_put": {"key": k, "value": B64.encode(value), "lease": lease.to_string()}}],
                }),
            )
            .await?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// Every key under `prefix`, and the store's revision they were read at (a watch from
    /// the next revision misses nothing).
    pub async fn get_prefix_at(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
            )
            .await?;
        Ok((
            self.kvs("/v3/kv/range", &v)?,
            number(&v["header"]["revision"]),
        ))
    }

    /// A transaction: when every compare holds, the ops run (all or nothing); whether they
    /// did.
    pub async fn txn(&self, compares: &[Compare], ops: &[Op]) -> Result<bool, EtcdError> {
        Ok(self.txn_at(compares, ops).await?.0)
    }

    /// [`Etcd::txn`], and the store's revision after it (the revision of what it wrote,
    /// when it succeeded and wrote something).
    pub async fn txn_at(&self, compares: &[Compare], ops: &[Op]) -> Result<(bool, i64), EtcdError> {
        let compare: Vec<Value> = compares.iter().map(Compare::json).collect();
        let success: Vec<Value> = ops.iter().map(Op::json).collect();
        let v = self
            .call(
                "/v3/kv/txn",
                json!({ "compare": compare, "success": success }),
            )
            .await?;
        Ok((
            v["succeeded"].as_bool().unwrap_or(false),
            number(&v["header"]["revision"]),
        ))
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<i64, EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({ "key": B64.encode(ROOT_PROBE), "count_only": true }),
            )
            .await?;
        Ok(number(&v["header"]["revision"]))
    }

    /// Drops the history before revision `rev` (etcd keeps every revision until
    /// compacted); watches from an older revision then end with [`WatchEnd::Compacted`].
    pub async fn compact(&self, rev: i64) -> Result<(), EtcdError> {
        self.call("/v3/kv/compaction", json!({ "revision": rev.to_string() }))
            .await
            .map(drop)
    }

    /// Watches every key under `prefix` from revision `from` (inclusive): the changes come
    /// from [`Watch::next`] in revision order.
    pub async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, EtcdError> {
        const CALL: &str = "/v3/watch";
        let body = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
            "start_revision": from.to_string(),
        }});
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let endpoint = self.endpoints[at].clone();
            let sent = self
                .streaming
                .post(format!("{endpoint}{CALL}"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(Watch {
                        endpoint,
                        response: r,
                        buffer: Vec::new(),
                    });
                }
                Ok(r) => {
                    return Err(EtcdError::Refused {
                        endpoint,
                        call: CALL,
                        status: r.status().as_u16(),
                        message: r.text().await.unwrap_or_default(),
                    });
                }
                Err(e) => errors.push(EtcdError::Unreachable {
                    endpoint,
                    call: CALL,
                    why: crate::errors::error_chain(&e),
                }),
            }
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            EtcdError::AllDown { call: CALL, errors }
        })
    }

    /// Revokes lease `id`: every key attached to it is deleted at once.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": id.to_string() }))
            .await
            .map(drop)
    }
}

/// Whether a call may be sent again (to the next endpoint) after its request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// A read: sending it twice changes nothing.
    Yes,
    /// A write: only when it was not sent (the connection could not be made).
    OnlyUnsent,
}

/// Whether `url`'s host is this machine's loopback (`127.0.0.0/8`, `::1`, `localhost`).
fn on_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// An HTTP client for etcd with `tls`, and an overall deadline per call when given.
fn client(tls: &Tls, timeout: Option<Duration>) -> Result<reqwest::Client, EtcdError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| EtcdError::Tls {
            path: p.display().to_string(),
            why: e.to_string(),
        })
    };
    let mut b = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .use_rustls_tls();
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(ca) = &tls.cacert {
        let pem = read(ca)?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| EtcdError::Tls {
            path: ca.display().to_string(),
            why: e.to_string(),
        })? {
            b = b.add_root_certificate(cert);
        }
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| EtcdError::Tls {
                path: format!("{} with {}", cert.display(), key.display()),
                why: e.to_string(),
            })?;
            b = b.identity(id);
        }
        (None, None) => {}
        (Some(p), None) | (None, Some(p)) => {
            return Err(EtcdError::Tls {
                path: p.display().to_string(),
                why: "--etcd-cert and --etcd-key go together".into(),
            });
        }
    }
    b.build().map_err(|e| EtcdError::Tls {
        path: "the TLS configuration".into(),
        why: e.to_string(),
    })
}

/// A condition of a [`Etcd::txn`].
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key was last changed at this revision (0: it does not exist).
    ModRevision(String, i64),
    /// The key does not exist.
    Absent(String),
    /// No key under the prefix was created or changed after this revision.
    UnchangedUnderSince(String, i64),
}

impl Compare {
    fn json(&self) -> Value {
        match self {
            Compare::ModRevision(k, rev) => json!({
                "key": B64.encode(k), "target": "MOD", "mod_revision": rev.to_string(), "result": "EQUAL"
            }),
            Compare::Absent(k) => json!({
                "key": B64.encode(k), "target": "CREATE", "create_revision": "0", "result": "EQUAL"
            }),
            // A compare over a range holds when it holds for every key in it (etcd 3.3+).
            Compare::UnchangedUnderSince(prefix, rev) => json!({
                "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)),
                "target": "MOD", "mod_revision": (rev + 1).to_string(), "result": "LESS"
            }),
        }
    }
}

/// An operation of a [`Etcd::txn`].
#[derive(Debug, Clone)]
pub enum Op {
    Put(String, Vec<u8>),
    /// A put attached to a lease: the key goes when the lease does.
    PutWithLease(String, Vec<u8>, i64),
    Delete(String),
}

impl Op {
    fn json(&self) -> Value {
        match self {
            Op::Put(k, v) => json!({"request_put": {"key": B64.encode(k), "value": B64.encode(v)}}),
            Op::PutWithLease(k, v, lease) => json!({"request_put": {
                "key": B64.encode(k), "value": B64.encode(v), "lease": lease.to_string()
            }}),
            Op::Delete(k) => json!({"request_delete_range": {"key": B64.encode(k)}}),
        }
    }
}

/// One change a watch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key's new value (its `mod_revision` is the change's revision).
    Put(Kv),
    /// The key was deleted at `revision`.
    Delete { key: String, revision: i64 },
}

/// A watch's stream of changes (etcd's gateway answers one JSON object a line).
#[derive(Debug)]
pub struct Watch {
    endpoint: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

/// Why a watch ended.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error("etcd {endpoint}: the watch stream ended: {why}")]
    Broken { endpoint: String, why: String },
    /// The revision asked for was compacted away: read the keys again, then watch anew.
    #[error(
        "etcd {endpoint}: the watch's start revision was compacted (now at {compact_revision})"
    )]
    Compacted {
        endpoint: String,
        compact_revision: i64,
    },
}

impl Watch {
    /// The next batch of changes (empty for etcd's own notices: the watch's creation,
    /// progress).
    pub async fn next(&mut self) -> Result<Vec<Event>, WatchEnd> {
        loop {
            if let Some(nl) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return self.parse(&line);
            }
            match self.response.chunk().await {
                Ok(Some(c)) => self.buffer.extend_from_slice(&c),
                Ok(None) => {
                    return Err(WatchEnd::Broken {
                        endpoint: self.endpoint.clone(),
                        why: "etcd closed it".into(),
                    });
                }
                Err(e) => {
                    return Err(WatchEnd::Broken {
                        endpoint: self.endpoint.clone(),
                        why: crate::errors::error_chain(&e),
                    });
                }
            }
        }
    }

    fn parse(&self, line: &[u8]) -> Result<Vec<Event>, WatchEnd> {
        let broken = |why: String| WatchEnd::Broken {
            endpoint: self.endpoint.clone(),
            why,
        };
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| broken(format!("a line that is not JSON: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(broken(format!("etcd said {err}")));
        }
        let r = &v["result"];
        let compact = number(&r["compact_revision"]);
        if compact > 0 {
            return Err(WatchEnd::Compacted {
                endpoint: self.endpoint.clone(),
                compact_revision: compact,
            });
        }
        if r["canceled"].as_bool() == Some(true) {
            return Err(broken(format!(
                "etcd canceled it: {}",
                r["cancel_reason"].as_str().unwrap_or("no reason given")
            )));
        }
        let mut out = Vec::new();
        for e in r["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let kv = &e["kv"];
            let key = kv["key"]
                .as_str()
                .and_then(|k| B64.decode(k).ok())
                .and_then(|k| String::from_utf8(k).ok())
                .ok_or_else(|| broken("an event whose key is not base64 UTF-8".into()))?;
            let revision = number(&kv["mod_revision"]);
            if e["type"].as_str() == Some("DELETE") {
                out.push(Event::Delete { key, revision });
            } else {
                let value = match kv["value"].as_str() {
                    Some(s) => B64
                        .decode(s)
                        .map_err(|_| broken("an event whose value is not base64".into()))?,
                    None => Vec::new(),
                };
                out.push(Event::Put(Kv {
                    key,
                    value,
                    mod_revision: revision,
                    lease: number(&kv["lease"]),
                }));
            }
        }
        Ok(out)
    }
}

/// A 64-bit number of the gateway's JSON (a string, or absent for 0).
fn number(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The end of the range of keys starting with `prefix` (its last byte incremented).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_urls() {
        let e = Etcd::new("127.0.0.1:2379, https://10.0.0.2:2379/", &Tls::default()).unwrap();
        assert_eq!(
            e.endpoints(),
            ["http://127.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        assert!(matches!(
            Etcd::new(" , ", &Tls::default()),
            Err(EtcdError::NoEndpoint(_))
        ));
        assert!(matches!(
            Etcd::new("ftp://x:1", &Tls::default()),
            Err(EtcdError::BadEndpoint { .. })
        ));
        // Plain http off loopback only when asked for; https anywhere.
        assert!(matches!(
            Etcd::new("http://127.0.0.1:2379,http://10.0.0.2:2379", &Tls::default()),
            Err(EtcdError::PlainRemote(e)) if e == "http://10.0.0.2:2379"
        ));
        let insecure = Tls {
            insecure_plaintext: true,
            ..Tls::default()
        };
        assert!(Etcd::new("http://10.0.0.2:2379", &insecure).is_ok());
        assert!(Etcd::new("http://localhost:2379,http://[::1]:2379", &Tls::default()).is_ok());
        assert!(Etcd::new("https://10.0.0.2:2379", &Tls::default()).is_ok());
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/a/"), b"/a0");
        assert_eq!(number(&json!("7587868143")), 7_587_868_143);
        assert_eq!(number(&Value::Null), 0);
    }
}
