//! A watch of a key prefix over etcd's JSON gateway: its stream read, made again from the
//! next revision after a silence or a refused token ([`Watch`], from [`super::Etcd::watch`]).

use super::*;

/// One change a watch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key's new value (its `mod_revision` is the change's revision).
    Put(Kv),
    /// The key was deleted at `revision`.
    Delete { key: String, revision: i64 },
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

/// How long a watch may hear nothing before it is made again. etcd says nothing on a
/// watch whose keys do not change, and a connection whose far end is gone (a half-open
/// TCP connection: a box cut off, a member frozen, a NAT that forgot it) says nothing
/// either, forever: a follower serve would never see the leader's key go and never
/// campaign, an agent never see its assignments. So a silent watch is dropped and made
/// again, by the next endpoint first, from the revision after the last change it passed
/// on: nothing is missed, and a dead connection costs at most this much. The cost on a
/// quiet cluster is one watch request per watch every 5 s (2 to 3 per process). Each
/// watch also asks for etcd's progress notices (`--experimental-watch-progress-notify-interval`,
/// 10 min by default), which count as heard.
pub const WATCH_IDLE: Duration = Duration::from_secs(5);

/// A watch's stream of changes (etcd's gateway answers one JSON object a line), made again
/// when it stays silent for longer than its deadline ([`WATCH_IDLE`]).
#[derive(Debug)]
pub struct Watch {
    pub(super) endpoint: String,
    pub(super) response: Option<reqwest::Response>,
    pub(super) buffer: Vec<u8>,
    pub(super) client: reqwest::Client,
    pub(super) endpoints: Vec<String>,
    pub(super) prefix: String,
    /// The revision to watch from when it is made again: the one after the last change
    /// passed on.
    pub(super) next: i64,
    pub(super) idle: Duration,
    /// How many times it was made again after a silence.
    pub(super) rewatches: u64,
    /// The client's etcd user, and the token the watch was made with.
    pub(super) auth: Option<Arc<Auth>>,
    pub(super) token: Option<String>,
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
                let events = self.parse(&line)?;
                if let Some(last) = events.iter().map(Event::revision).max() {
                    self.next = self.next.max(last + 1);
                }
                return Ok(events);
            }
            let Some(response) = self.response.as_mut() else {
                self.again().await?;
                continue;
            };
            match tokio::time::timeout(self.idle, response.chunk()).await {
                Err(_silent) => self.again().await?,
                Ok(Ok(Some(c))) => self.buffer.extend_from_slice(&c),
                Ok(Ok(None)) => {
                    return Err(WatchEnd::Broken {
                        endpoint: self.endpoint.clone(),
                        why: "etcd closed it".into(),
                    });
                }
                Ok(Err(e)) => {
                    return Err(WatchEnd::Broken {
                        endpoint: self.endpoint.clone(),
                        why: crate::errors::error_chain(&e),
                    });
                }
            }
        }
    }

    /// Drops the silent stream (its connection with it) and watches again from
    /// [`Watch::next`], by the next endpoint first.
    async fn again(&mut self) -> Result<(), WatchEnd> {
        let silent = std::mem::take(&mut self.endpoint);
        self.response = None;
        self.buffer.clear();
        self.rewatches += 1;
        let after = self
            .endpoints
            .iter()
            .position(|e| *e == silent)
            .map_or(0, |i| i + 1);
        tracing::debug!(endpoint = %silent, prefix = %self.prefix, from = self.next, "etcd watch silent: watching again");
        self.open(after)
            .await
            .map(drop)
            .map_err(|e| WatchEnd::Broken {
                endpoint: silent,
                why: format!(
                    "nothing heard for {:.1} s, and watching again failed: {}",
                    self.idle.as_secs_f64(),
                    crate::errors::error_chain(&e)
                ),
            })
    }

    /// Creates the watch on the first endpoint from `first` on that answers (each given
    /// [`Watch::idle`] to answer): the index of the one that did.
    pub(super) async fn open(&mut self, first: usize) -> Result<usize, EtcdError> {
        const CALL: &str = "/v3/watch";
        let body = json!({ "create_request": {
            "key": B64.encode(&self.prefix),
            "range_end": B64.encode(prefix_end(&self.prefix)),
            "start_revision": self.next.to_string(),
            "progress_notify": true,
        }});
        let n = self.endpoints.len();
        let mut errors = Vec::new();
        let mut reauthenticate = true;
        let mut i = 0;
        while i < n {
            let at = (first + i) % n;
            i += 1;
            let endpoint = self.endpoints[at].clone();
            self.token = match &self.auth {
                Some(a) => a.token(&self.endpoints, at).await?,
                None => None,
            };
            let mut request = self
                .client
                .post(format!("{endpoint}{CALL}"))
                .header("content-type", "application/json");
            if let Some(t) = &self.token {
                request = request.header("authorization", t);
            }
            let sent = tokio::time::timeout(self.idle, request.body(body.to_string()).send()).await;
            match sent {
                Ok(Ok(r)) if r.status().is_success() => {
                    self.endpoint = endpoint;
                    self.response = Some(r);
                    return Ok(at);
                }
                Ok(Ok(r)) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    let message = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_string))
                        .unwrap_or(text);
                    let e = EtcdError::Refused {
                        endpoint,
                        call: CALL,
                        status,
                        message,
                    };
                    if reauthenticate
                        && token_refused(&e)
                        && let Some(a) = &self.auth
                    {
                        a.forget(self.token.as_deref()).await;
                        reauthenticate = false;
                        i -= 1;
                        continue;
                    }
                    return Err(e);
                }
                Ok(Err(e)) => errors.push(EtcdError::Unreachable {
                    endpoint,
                    call: CALL,
                    why: crate::errors::error_chain(&e),
                }),
                Err(_) => errors.push(EtcdError::Unreachable {
                    endpoint,
                    call: CALL,
                    why: format!("no answer within {:.1} s", self.idle.as_secs_f64()),
                }),
            }
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            EtcdError::AllDown { call: CALL, errors }
        })
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
            let reason = r["cancel_reason"].as_str().unwrap_or("no reason given");
            if reason.contains("auth token") || reason.contains("auth store is old") {
                // Made again by the caller: with a new token.
                if let Some(a) = &self.auth {
                    a.stale.store(true, Ordering::Relaxed);
                }
            }
            return Err(broken(format!("etcd canceled it: {reason}")));
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
                    create_revision: number(&kv["create_revision"]),
                    lease: number(&kv["lease"]),
                }));
            }
        }
        Ok(out)
    }
}
