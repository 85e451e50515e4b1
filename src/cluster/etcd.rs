//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/kv/range`, `/v3/kv/put`,
//! `/v3/kv/txn`, `/v3/kv/deleterange`, `/v3/lease/grant`, `/v3/lease/keepalive`,
//! `/v3/lease/revoke`; keys and values base64, 64-bit numbers as strings), through the
//! reqwest already in the tree. Why the gateway and not the gRPC crate: docs/cluster.md
//! ("The etcd client"). Ref: etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/.
//!
//! Endpoints are tried in order: the first that answers is used until it stops answering
//! (a connection failure moves to the next; an answer from etcd, even an error, does not).
//! A write whose request may have reached etcd (a timeout or a reset after it was sent) is
//! never sent again blindly: it ends in [`EtcdError::OutcomeUnknown`], and the caller reads
//! back what happened (docs/cluster.md "The etcd client"); a plain put and a lease grant
//! do that here themselves ([`Etcd::put`], [`Etcd::grant`]). Every call has a deadline, so a
//! stopped etcd is an error naming the endpoints, never a hang.

use super::txn::prefix_end;

mod watch;
pub use super::txn::{Compare, Op};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
pub use watch::WATCH_IDLE;
pub use watch::{Event, Watch, WatchEnd};

/// How long a connection attempt may take before the next endpoint is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a put or a lease grant is sent when its answers are lost.
const PUT_TRIES: u32 = 3;
/// A key read only for the revision in the answer's header.
const ROOT_PROBE: &str = "/minifargate";

/// TLS to etcd, named as etcdctl names its options.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tls {
    /// `--etcd-cacert`: the CA that signed etcd's server certificate.
    pub cacert: Option<PathBuf>,
    /// `--etcd-cert`: this client's certificate (etcd's `--client-cert-auth`).
    pub cert: Option<PathBuf>,
    /// `--etcd-key`: the private key of `cert`.
    pub key: Option<PathBuf>,
    /// `--etcd-insecure-plaintext`: a plain-http endpoint off loopback is allowed.
    pub insecure_plaintext: bool,
    /// A bundle directory holding `etcd-user` and `etcd-password` (`cluster init`,
    /// `cluster add-box`): the etcd user this client authenticates as (etcd's RBAC). A
    /// joined box's has no password: serve's port for boxes authenticates for it.
    pub credentials: Option<PathBuf>,
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
        /// No answer within the deadline (etcd slow, or without a quorum), rather than a
        /// connection cut after the request was sent.
        timed_out: bool,
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
    /// The revision the key was created at (its current life).
    pub create_revision: i64,
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
    /// The CA etcd's certificate is checked with (`--etcd-cacert`): the cluster's, which
    /// the agents' endpoints are checked with too.
    ca: Option<PathBuf>,
    /// This client's certificate and key (`--etcd-cert`, `--etcd-key`), which it presents
    /// to the agents' endpoints too.
    identity: Option<(PathBuf, PathBuf)>,
    /// The etcd user this client authenticates as, and its token.
    auth: Option<Arc<Auth>>,
    /// Its etcd user (`etcd-user`), with or without a password to authenticate with.
    user: Option<String>,
    /// The bundle directory the user's password was read from.
    bundle: Option<PathBuf>,
}

/// An etcd user (`POST /v3/auth/authenticate`) and the token etcd gave it, sent in
/// `Authorization` with every call. etcd 3.4's JSON gateway refuses a client certificate
/// with a common name once authentication is on, so the certificate proves membership of
/// the cluster and the password the identity (docs/cluster.md "Security").
#[derive(Debug)]
struct Auth {
    user: String,
    password: String,
    http: reqwest::Client,
    state: tokio::sync::Mutex<AuthState>,
    /// Set where the state cannot be locked (a watch canceled for its token): the next
    /// call authenticates again.
    stale: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthState {
    /// Not authenticated yet, or the token lapsed.
    None,
    Token(String),
    /// etcd's authentication is off: calls go without a token until etcd asks for one.
    Disabled,
}

impl Auth {
    /// The token to send (`None`: etcd's authentication is off), authenticating when there
    /// is none. One authentication at a time: etcd checks a password with bcrypt.
    async fn token(&self, endpoints: &[String], first: usize) -> Result<Option<String>, EtcdError> {
        const CALL: &str = "/v3/auth/authenticate";
        let mut state = self.state.lock().await;
        if self.stale.swap(false, Ordering::Relaxed) {
            *state = AuthState::None;
        }
        match &*state {
            AuthState::Token(t) => return Ok(Some(t.clone())),
            AuthState::Disabled => return Ok(None),
            AuthState::None => {}
        }
        let body = json!({ "name": self.user, "password": self.password }).to_string();
        let n = endpoints.len();
        let mut errors = Vec::new();
        for i in 0..n {
            let endpoint = &endpoints[(first + i) % n];
            let answer = async {
                let r = self
                    .http
                    .post(format!("{endpoint}{CALL}"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = r.status();
                Ok::<_, reqwest::Error>((status, r.bytes().await?))
            }
            .await;
            let (status, bytes) = match answer {
                Ok(a) => a,
                Err(e) => {
                    errors.push(EtcdError::Unreachable {
                        endpoint: endpoint.clone(),
                        call: CALL,
                        why: crate::errors::error_chain(&e),
                    });
                    continue;
                }
            };
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status.is_success() {
                let Some(token) = v["token"].as_str() else {
                    return Err(EtcdError::Malformed {
                        endpoint: endpoint.clone(),
                        call: CALL,
                        why: "no token in the answer".into(),
                    });
                };
                *state = AuthState::Token(token.to_string());
                return Ok(Some(token.to_string()));
            }
            let message = v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            if message.contains("authentication is not enabled") {
                *state = AuthState::Disabled;
                return Ok(None);
            }
            return Err(EtcdError::Refused {
                endpoint: endpoint.clone(),
                call: CALL,
                status: status.as_u16(),
                message: format!("as etcd user {:?}: {message}", self.user),
            });
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            EtcdError::AllDown { call: CALL, errors }
        })
    }

    /// Forgets `token` (etcd said it is no longer valid, or asked for one while the
    /// client thought authentication off): the next call authenticates again.
    async fn forget(&self, token: Option<&str>) {
        let mut state = self.state.lock().await;
        let stale = match token {
            Some(t) => AuthState::Token(t.to_string()),
            None => AuthState::Disabled,
        };
        if *state == stale {
            *state = AuthState::None;
        }
    }
}

/// Whether etcd refused a call for its token (lapsed after `--auth-token-ttl`, made before
/// the auth store changed, or missing while authentication is on): authenticating again
/// and resending is safe, the call was not applied.
fn token_refused(e: &EtcdError) -> bool {
    matches!(e, EtcdError::Refused { status, message, .. } if refused_for_token(*status, message))
}

/// How many times one call is sent with a new token when etcd refuses the one sent. Each
/// change of etcd's users and roles (a box joining adds a user, a role and its grants; a
/// binding grants an instance's keys) makes every token "old": while boxes join, a new
/// token can be old again before its call arrives (issue 76, docs/cluster.md "Scale").
pub const TOKEN_TRIES: usize = 5;

/// Whether an answer of HTTP `status` saying `message` refused a call for its token.
pub fn refused_for_token(status: u16, message: &str) -> bool {
    status == 401
        || [
            "invalid auth token",
            "auth store is old",
            "user name is empty",
        ]
        .iter()
        .any(|m| message.contains(m))
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
        let read = |dir: &std::path::Path, name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_string())
                .map_err(|e| EtcdError::Tls {
                    path: p.display().to_string(),
                    why: e.to_string(),
                })
        };
        let user = match &tls.credentials {
            Some(dir) => Some(read(dir, "etcd-user")?),
            None => None,
        };
        // A joined box's bundle names its user and holds no password: serve's port for
        // boxes authenticates as that user on its behalf (super::gateway).
        let auth = match (&tls.credentials, &user) {
            (Some(dir), Some(user)) if dir.join("etcd-password").exists() => Some(Arc::new(Auth {
                user: user.clone(),
                password: read(dir, "etcd-password")?,
                http: http.clone(),
                state: tokio::sync::Mutex::new(AuthState::None),
                stale: std::sync::atomic::AtomicBool::new(false),
            })),
            _ => None,
        };
        Ok(Etcd {
            endpoints: list,
            http,
            streaming,
            current: AtomicUsize::new(0),
            ca: tls.cacert.clone(),
            identity: tls.cert.clone().zip(tls.key.clone()),
            auth,
            user,
            bundle: tls.credentials.clone(),
        })
    }

    /// The bundle directory this client's etcd user comes from, if any.
    pub fn bundle(&self) -> Option<&std::path::Path> {
        self.bundle.as_deref()
    }

    /// Whether etcd's authentication is on, asked again now (one authentication); `None`
    /// for a client without an etcd user (it cannot tell, and sends no token).
    pub async fn auth_on(&self) -> Result<Option<bool>, EtcdError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        auth.stale.store(true, Ordering::Relaxed);
        let first = self.current.load(Ordering::Relaxed);
        Ok(Some(auth.token(&self.endpoints, first).await?.is_some()))
    }

    /// The cluster's CA (`--etcd-cacert`), if etcd is reached over TLS.
    pub fn ca(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    /// This client's certificate and key (`--etcd-cert`, `--etcd-key`), if it has them.
    pub fn identity(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        self.identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// The etcd user this client acts as (its bundle's), if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// One gateway call as this client's etcd user: authenticated on the first call, and
    /// again (the call resent) when etcd refuses the token, up to [`TOKEN_TRIES`] times.
    async fn call(&self, call: &'static str, body: Value) -> Result<Value, EtcdError> {
        let Some(auth) = &self.auth else {
            return self.send(call, &body, None).await;
        };
        let mut tries = 1;
        loop {
            let first = self.current.load(Ordering::Relaxed) % self.endpoints.len();
            let token = auth.token(&self.endpoints, first).await?;
            match self.send(call, &body, token.as_deref()).await {
                Err(e) if tries < TOKEN_TRIES && token_refused(&e) => {
                    tracing::debug!(user = %auth.user, error = %e, "etcd refused the token: authenticating again");
                    auth.forget(token.as_deref()).await;
                    tries += 1;
                }
                r => return r,
            }
        }
    }

    /// One gateway call, with failover between the endpoints: a read ([`Resend::Yes`]) goes
    /// to the next endpoint on any failure, a write only when its request was not sent (a
    /// connection that could not be made).
    async fn send(
        &self,
        call: &'static str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, EtcdError> {
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
            let mut request = self
                .http
                .post(format!("{endpoint}{call}"))
                .header("content-type", "application/json");
            if let Some(t) = token {
                request = request.header("authorization", t);
            }
            let sent = request.body(body.to_string()).send().await;
            let unreachable = |why: String| EtcdError::Unreachable {
                endpoint: endpoint.clone(),
                call,
                why,
            };
            let unknown = |why: String, timed_out: bool| {
                // The next call starts at the next endpoint: this one may be hung.
                self.current.store((at + 1) % n, Ordering::Relaxed);
                EtcdError::OutcomeUnknown {
                    endpoint: endpoint.clone(),
                    call,
                    why,
                    timed_out,
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
                Err(e) => return Err(unknown(crate::errors::error_chain(&e), e.is_timeout())),
            };
            let status = resp.status();
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) if resend == Resend::Yes => {
                    errors.push(unreachable(crate::errors::error_chain(&e)));
                    continue;
                }
                Err(e) => return Err(unknown(crate::errors::error_chain(&e), e.is_timeout())),
            };
            // A gateway in front of etcd (serve's port for boxes, super::gateway) that sent
            // the request and got no answer in time: as a timeout here (etcd itself says
            // 504 only for a deadline it ran out of, which is the same: maybe applied).
            if status == reqwest::StatusCode::GATEWAY_TIMEOUT {
                let why = format!("HTTP 504: {}", String::from_utf8_lossy(&bytes).trim());
                if resend == Resend::Yes {
                    errors.push(unreachable(why));
                    continue;
                }
                return Err(unknown(why, true));
            }
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

    /// One gateway call on another client's behalf (serve's port for boxes,
    /// [`super::gateway`]): `body` as it came, with that client's `authorization` (its
    /// etcd token; none for `/v3/auth/authenticate`) and never this client's own token,
    /// so that etcd answers as that client's user. The first endpoint that takes the
    /// connection answers; its response is returned as it is, streamed (a watch is one
    /// long response), whatever its status. A connection that no endpoint takes is
    /// [`EtcdError::AllDown`]; a request sent and not answered is
    /// [`EtcdError::OutcomeUnknown`] (never sent again here: the caller's client decides).
    pub async fn forward(
        &self,
        call: &'static str,
        body: axum::body::Bytes,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, EtcdError> {
        let client = if call == "/v3/watch" {
            &self.streaming
        } else {
            &self.http
        };
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let endpoint = &self.endpoints[at];
            let mut request = client
                .post(format!("{endpoint}{call}"))
                .header("content-type", "application/json");
            if let Some(t) = authorization {
                request = request.header("authorization", t);
            }
            match request.body(body.clone()).send().await {
                Ok(r) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(r);
                }
                Err(e) if e.is_connect() => errors.push(EtcdError::Unreachable {
                    endpoint: endpoint.clone(),
                    call,
                    why: crate::errors::error_chain(&e),
                }),
                Err(e) => {
                    self.current.store((at + 1) % n, Ordering::Relaxed);
                    return Err(EtcdError::OutcomeUnknown {
                        endpoint: endpoint.clone(),
                        call,
                        why: crate::errors::error_chain(&e),
                        timed_out: e.is_timeout(),
                    });
                }
            }
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            EtcdError::AllDown { call, errors }
        })
    }

    /// This client's own token, for a call it passes on as itself ([`Etcd::forward`]:
    /// serve's port for boxes): `None` without an etcd user or while etcd's
    /// authentication is off.
    pub async fn own_token(&self) -> Result<Option<String>, EtcdError> {
        match &self.auth {
            None => Ok(None),
            Some(a) => {
                let first = self.current.load(Ordering::Relaxed) % self.endpoints.len();
                a.token(&self.endpoints, first).await
            }
        }
    }

    /// Forgets this client's token `stale` (etcd refused it): the next call authenticates.
    pub async fn forget_own_token(&self, stale: Option<&str>) {
        if let Some(a) = &self.auth {
            a.forget(stale).await;
        }
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

    /// The value of `key`, read again (every endpoint in turn, pausing between rounds)
    /// while no member answers, for up to `within`: the read back of a write whose answer
    /// was lost, where one more try is better than an outcome left unknown (an etcd member
    /// restarting, or a proxy dropping answers, is back within seconds).
    pub async fn get_within(
        &self,
        key: &str,
        within: std::time::Duration,
    ) -> Result<Option<Kv>, EtcdError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            match self.get(key).await {
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(key, error = %e, "read back: no member answered; again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                r => return r,
            }
        }
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
                create_revision: number(&kv["create_revision"]),
                lease: number(&kv["lease"]),
            });
        }
        Ok(out)
    }

    /// Puts `key` = `value`, attached to `lease` when given.
    ///
    /// A put whose connection was cut after it was sent is read back here (a put compares
    /// nothing: it is done when the key holds the value, on the lease asked for) and sent
    /// again if it is not done, at most [`PUT_TRIES`] times in all (one that timed out is
    /// not: etcd is slow or has no quorum, and trying again would only triple the wait): one lost answer, under a fault that
    /// loses a third of them, no longer ends an agent's session and its registration
    /// (scripts/chaos-cluster, issue 73).
    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<(), EtcdError> {
        let mut body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if let Some(l) = lease {
            body["lease"] = json!(l.to_string());
        }
        let mut tries = 1;
        loop {
            match self.call("/v3/kv/put", body.clone()).await {
                Ok(_) => return Ok(()),
                Err(
                    e @ EtcdError::OutcomeUnknown {
                        timed_out: false, ..
                    },
                ) if tries < PUT_TRIES => {
                    tries += 1;
                    if let Ok(Some(kv)) = self.get(key).await
                        && kv.value == value
                        && lease.is_none_or(|l| kv.lease == l)
                    {
                        return Ok(());
                    }
                    tracing::debug!(key, error = %e, "a put's answer was lost and it is not in: sending it again");
                }
                Err(e) => return Err(e),
            }
        }
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

    /// A lease of `ttl` seconds: its id. A grant whose connection was cut after it was
    /// sent (not one that timed out) is asked again
    /// (at most [`PUT_TRIES`] times in all): a lease granted then holds no key and lapses
    /// after `ttl`.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let mut tries = 1;
        let v = loop {
            match self
                .call("/v3/lease/grant", json!({ "TTL": ttl.to_string() }))
                .await
            {
                Err(EtcdError::OutcomeUnknown {
                    timed_out: false, ..
                }) if tries < PUT_TRIES => tries += 1,
                r => break r?,
            }
        };
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
    /// from [`Watch::next`] in revision order. A watch that hears nothing for
    /// [`WATCH_IDLE`] is made again from the revision after the last change it passed on
    /// (see [`Watch`]).
    pub async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, EtcdError> {
        let first = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let mut w = Watch {
            endpoint: String::new(),
            response: None,
            buffer: Vec::new(),
            client: self.streaming.clone(),
            endpoints: self.endpoints.clone(),
            prefix: prefix.to_string(),
            next: from,
            idle: WATCH_IDLE,
            rewatches: 0,
            auth: self.auth.clone(),
            token: None,
        };
        let at = w.open(first).await?;
        self.current.store(at, Ordering::Relaxed);
        Ok(w)
    }

    /// One call of etcd's authentication API (`/v3/auth/...`: users, roles, `enable`),
    /// as this client's user (root, to change users and roles once authentication is on).
    pub async fn auth_call(&self, call: &'static str, body: Value) -> Result<Value, EtcdError> {
        self.call(call, body).await
    }

    /// Grants `role` read (or read and write) on every key under `prefix`.
    pub async fn grant_prefix(
        &self,
        role: &str,
        prefix: &str,
        write: bool,
    ) -> Result<(), EtcdError> {
        self.call(
            "/v3/auth/role/grant",
            json!({ "name": role, "perm": {
                "permType": if write { "READWRITE" } else { "READ" },
                "key": B64.encode(prefix),
                "range_end": B64.encode(prefix_end(prefix)),
            }}),
        )
        .await
        .map(drop)
    }

    /// Grants `role` read (or read and write) on the one key `key`.
    pub async fn grant_key(&self, role: &str, key: &str, write: bool) -> Result<(), EtcdError> {
        self.call(
            "/v3/auth/role/grant",
            json!({ "name": role, "perm": {
                "permType": if write { "READWRITE" } else { "READ" },
                "key": B64.encode(key),
            }}),
        )
        .await
        .map(drop)
    }

    /// Revokes lease `id`: every key attached to it is deleted at once.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": id.to_string() }))
            .await
            .map(drop)
    }

    /// The keys attached to lease `id`, or `None` when it expired (or never was).
    pub async fn lease_keys(&self, id: i64) -> Result<Option<Vec<String>>, EtcdError> {
        const CALL: &str = "/v3/lease/timetolive";
        let v = self
            .call(CALL, json!({ "ID": id.to_string(), "keys": true }))
            .await?;
        if number(&v["TTL"]) <= 0 {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for k in v["keys"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = k
                .as_str()
                .and_then(|k| B64.decode(k).ok())
                .and_then(|k| String::from_utf8(k).ok())
                .ok_or_else(|| self.malformed(CALL, "a key that is not base64 UTF-8"))?;
            keys.push(key);
        }
        Ok(Some(keys))
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
        // That CA alone, as etcdctl's --cacert: no public CA vouches for an etcd member
        // (and the system's bundle is not parsed for every connection).
        b = b.tls_built_in_root_certs(false);
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

/// A 64-bit number of the gateway's JSON (a string, or absent for 0).
fn number(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
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

    /// A gateway that answers each watch request with `lines` (one list per connection,
    /// in order) and then says nothing more, its connection open (a half-open connection
    /// looks the same from this end): the requests' bodies, as they came.
    async fn silent_gateway(
        per_connection: Vec<Vec<&'static str>>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for lines in per_connection {
                let (mut c, _) = listener.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // One small request: its head and JSON body arrive together.
                while !req.ends_with(b"}}") {
                    let n = c.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the client closed before its request was whole");
                    req.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                tx.send(text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
                    .unwrap();
                let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n".to_vec();
                for l in lines {
                    out.extend_from_slice(l.as_bytes());
                    out.push(b'\n');
                }
                c.write_all(&out).await.unwrap();
                held.push(c);
            }
            std::future::pending::<()>().await;
        });
        (format!("http://{addr}"), rx)
    }

    #[tokio::test]
    async fn a_silent_watch_is_made_again_from_the_revision_after_the_last_change() {
        const CREATED: &str = r#"{"result":{"header":{"revision":"8"},"created":true}}"#;
        // "/k/a" put at revision 9; base64 of "/k/a" and "1".
        const PUT9: &str = r#"{"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"L2svYQ==","value":"MQ==","mod_revision":"9"}}]}}"#;
        let (endpoint, mut requests) =
            silent_gateway(vec![vec![CREATED, PUT9], vec![CREATED]]).await;
        let etcd = Etcd::new(&endpoint, &Tls::default()).unwrap();
        let mut w = etcd.watch("/k/", 5).await.unwrap();
        w.idle = Duration::from_millis(300);
        let first: Value = serde_json::from_str(&requests.recv().await.unwrap()).unwrap();
        assert_eq!(first["create_request"]["start_revision"], "5");
        assert_eq!(first["create_request"]["progress_notify"], true);
        assert!(w.next().await.unwrap().is_empty(), "the creation notice");
        assert_eq!(w.next().await.unwrap()[0].revision(), 9);
        // Then nothing: after the deadline the watch is made again, from revision 10.
        let next = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        assert!(
            matches!(next, Ok(Ok(ref e)) if e.is_empty()),
            "the new watch's creation notice: {next:?}"
        );
        let again: Value = serde_json::from_str(&requests.recv().await.unwrap()).unwrap();
        assert_eq!(again["create_request"]["start_revision"], "10");
        assert_eq!(w.rewatches, 1);
        // A gateway that accepts no new watch: the watch ends, naming the silence.
        let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        assert!(
            matches!(&end, Ok(Err(WatchEnd::Broken { why, .. })) if why.contains("nothing heard")),
            "{end:?}"
        );
    }

    /// A gateway with authentication on: `/v3/auth/authenticate` gives `t1`, then `t2`
    /// (its password checked); a call with `t1` is refused as etcd refuses a lapsed
    /// token, one with `t2` answered. What it was asked, in order.
    async fn auth_gateway() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            let mut tokens = 0;
            loop {
                let (mut c, _) = listener.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = c.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len || n == 0 {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let path = text.split(' ').nth(1).unwrap_or_default().to_string();
                let token = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("authorization: ")
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                log.lock().unwrap().push(format!("{path} {token}"));
                let (status, body) = if path == "/v3/auth/authenticate" {
                    if text.contains(r#""password":"pw""#) {
                        tokens += 1;
                        ("200 OK", format!(r#"{{"token":"t{tokens}"}}"#))
                    } else {
                        ("400 Bad Request", r#"{"message":"etcdserver: authentication failed, invalid user ID or password"}"#.to_string())
                    }
                } else if token == "t2" {
                    ("200 OK", r#"{"header":{"revision":"5"}}"#.to_string())
                } else if token.is_empty() {
                    (
                        "400 Bad Request",
                        r#"{"message":"etcdserver: user name is empty"}"#.to_string(),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"message":"etcdserver: invalid auth token","code":16}"#.to_string(),
                    )
                };
                let out = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                c.write_all(out.as_bytes()).await.unwrap();
            }
        });
        (format!("http://{addr}"), asked)
    }

    #[tokio::test]
    async fn a_refused_token_is_replaced_and_the_call_sent_again_once() {
        let (endpoint, asked) = auth_gateway().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd-user"), "minifargate-box-b1\n").unwrap();
        std::fs::write(dir.path().join("etcd-password"), "pw\n").unwrap();
        let tls = Tls {
            credentials: Some(dir.path().to_path_buf()),
            ..Tls::default()
        };
        let etcd = Etcd::new(&endpoint, &tls).unwrap();
        assert_eq!(etcd.user(), Some("minifargate-box-b1"));
        // t1 is refused (lapsed): authenticated again, the put sent again with t2.
        etcd.put("/k", b"v", None).await.unwrap();
        etcd.put("/k", b"w", None).await.unwrap();
        assert_eq!(
            *asked.lock().unwrap(),
            [
                "/v3/auth/authenticate ",
                "/v3/kv/put t1",
                "/v3/auth/authenticate ",
                "/v3/kv/put t2",
                "/v3/kv/put t2",
            ]
        );
        // A wrong password is an error naming the user.
        std::fs::write(dir.path().join("etcd-password"), "nope\n").unwrap();
        let wrong = Etcd::new(&endpoint, &tls).unwrap();
        let e = wrong.get("/k").await.unwrap_err().to_string();
        assert!(
            e.contains("minifargate-box-b1") && e.contains("invalid user ID or password"),
            "{e}"
        );
    }

    #[test]
    fn numbers_are_strings_or_absent() {
        assert_eq!(number(&json!("7587868143")), 7_587_868_143);
        assert_eq!(number(&Value::Null), 0);
    }
}
