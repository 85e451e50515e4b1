//! Reaching the box that runs a task (docs/cluster.md "exec across boxes", "The console
//! across boxes"): its record in etcd names its container instance, whose registration
//! names the agent's endpoint; over TLS the caller presents its bundle's certificate
//! (serve's or the operator's, [`super::endpoint::callers`]), without TLS requests are
//! signed with the cluster's token ([`super::signing`]).

use super::etcd::{Etcd, EtcdError};
use super::instances::Registration;
use super::keys;
use super::records::{Record, Undecodable, decode};
use super::signing::{SIGNATURE, sign, token};
use serde_json::Value;
use std::time::Duration;

/// Where a task of the cluster is, as etcd says.
#[derive(Debug, Clone)]
pub struct Located {
    pub cluster: String,
    pub task: String,
    /// Its container instance id.
    pub instance: String,
    pub hostname: String,
    /// The agent's endpoint (`https://ADDR:PORT`, `http://ADDR:PORT`, or a joined box's
    /// tunnel: [`super::tunnel::resolve`]), if it registered one.
    pub endpoint: Option<String>,
    /// The instance's agent holds its liveness lease.
    pub connected: bool,
    /// The record's lastStatus and stoppedReason.
    pub last_status: String,
    pub stopped_reason: Option<String>,
}

/// Why a box could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Undecodable(#[from] Undecodable),
    #[error(
        "task {task} is not in the cluster's etcd ({clusters}): not a task of the cluster, or \
         stopped long enough ago to be pruned"
    )]
    NotInCluster { task: String, clusters: String },
    #[error("task {task} is STOPPED{why}: exec needs a RUNNING task")]
    Stopped { task: String, why: String },
    #[error(
        "task {task} runs on container instance {instance} ({host}), whose agent is not \
         connected (its liveness lease ran out or it was stopped): the box cannot be reached"
    )]
    Disconnected {
        task: String,
        instance: String,
        host: String,
    },
    #[error(
        "container instance {instance} ({host}) registered no endpoint (its agent predates \
         endpoints): restart it with this version"
    )]
    NoEndpoint { instance: String, host: String },
    #[error(
        "task {task}: the agent of container instance {instance} at {endpoint} could not be reached"
    )]
    Unreachable {
        task: String,
        instance: String,
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "task {task}: the agent of container instance {instance} at {endpoint} refused the \
         request (HTTP 403): {message} (is this etcd the cluster the agent reads its token \
         from, and are the clocks within a minute?)"
    )]
    Refused {
        task: String,
        instance: String,
        endpoint: String,
        message: String,
    },
    /// The agent answered with an error of its own (the task is not there, not running …).
    #[error("container instance {instance} ({host}): {message}")]
    Answered {
        instance: String,
        host: String,
        status: u16,
        kind: String,
        message: String,
    },
    #[error(
        "task {task}: the connection to the agent at {endpoint} ended before the command's \
         exit code"
    )]
    Lost {
        task: String,
        endpoint: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

impl RemoteError {
    /// The HTTP status a serve answers a console view with, for this failure.
    pub fn status(&self) -> u16 {
        match self {
            RemoteError::NotInCluster { .. } => 404,
            RemoteError::Answered { status, .. } => *status,
            RemoteError::Stopped { .. } => 409,
            _ => 502,
        }
    }
}

/// The task id of an id or ARN.
fn task_id(t: &str) -> &str {
    t.rsplit('/').next().unwrap_or(t)
}

/// Where task `task` (id or ARN) is: in `cluster`, or in whichever cluster has it.
pub async fn locate(
    etcd: &Etcd,
    cluster: Option<&str>,
    task: &str,
) -> Result<Located, RemoteError> {
    let id = task_id(task);
    let clusters = match cluster {
        Some(c) => vec![crate::ecs::names::cluster_name(c).to_string()],
        None => keys::cluster_names(&etcd.keys_with_prefix(&keys::clusters()).await?, "tasks"),
    };
    for c in &clusters {
        let key = keys::task(c, id);
        let Some(kv) = etcd.get(&key).await? else {
            continue;
        };
        let r: Record = decode(&key, &kv.value)?;
        let reg_key = keys::instance(c, &r.instance);
        let reg: Option<Registration> = match etcd.get(&reg_key).await? {
            Some(kv) => Some(decode(&reg_key, &kv.value)?),
            None => None,
        };
        let connected = etcd.get(&keys::alive(c, &r.instance)).await?.is_some();
        return Ok(Located {
            cluster: c.clone(),
            task: id.to_string(),
            hostname: reg
                .as_ref()
                .map(|r| r.hostname.clone())
                .unwrap_or_else(|| "unregistered".into()),
            endpoint: super::tunnel::resolve(reg.and_then(|r| r.endpoint), c, &r.instance),
            instance: r.instance,
            connected,
            last_status: r.task["lastStatus"].as_str().unwrap_or_default().into(),
            stopped_reason: r.task["stoppedReason"].as_str().map(str::to_string),
        });
    }
    Err(RemoteError::NotInCluster {
        task: task.into(),
        clusters: if clusters.is_empty() {
            "it has no task".into()
        } else {
            format!("clusters searched: {}", clusters.join(", "))
        },
    })
}

impl Located {
    /// The agent's endpoint, if the box can be reached.
    pub fn reachable(&self) -> Result<&str, RemoteError> {
        if !self.connected {
            return Err(RemoteError::Disconnected {
                task: self.task.clone(),
                instance: self.instance.clone(),
                host: self.hostname.clone(),
            });
        }
        self.endpoint
            .as_deref()
            .ok_or_else(|| RemoteError::NoEndpoint {
                instance: self.instance.clone(),
                host: self.hostname.clone(),
            })
    }

    /// An agent's error answer (`{"__type", "message"}`) as the error it is.
    pub fn answered(&self, status: u16, body: &Value) -> RemoteError {
        let message = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        if status == 403 {
            return RemoteError::Refused {
                task: self.task.clone(),
                instance: self.instance.clone(),
                endpoint: self.endpoint.clone().unwrap_or_default(),
                message,
            };
        }
        RemoteError::Answered {
            instance: self.instance.clone(),
            host: self.hostname.clone(),
            status,
            kind: body["__type"].as_str().unwrap_or_default().into(),
            message,
        }
    }

    pub fn unreachable(
        &self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> RemoteError {
        RemoteError::Unreachable {
            task: self.task.clone(),
            instance: self.instance.clone(),
            endpoint: self.endpoint.clone().unwrap_or_default(),
            source: source.into(),
        }
    }
}

/// The call a console view of task `id` is signed as.
pub fn view_call(view: &str, id: &str) -> String {
    format!("console/{view}/{id}")
}

/// The console's `view` (isolation, stats, timeline, logs) of task `id`, with `query`
/// (the page's query string), answered by the agent of the box that runs it: the agent's
/// status and JSON body.
pub async fn console_view(
    etcd: &Etcd,
    view: &str,
    id: &str,
    query: &str,
) -> Result<(u16, Value), RemoteError> {
    let at = locate(etcd, None, id).await?;
    let endpoint = at.reachable()?.to_string();
    let call = view_call(view, &at.task);
    // The query as it goes on the wire (a URL's encoding of it), signed as the agent sees it.
    let mut url = reqwest::Url::parse(&format!("http://127.0.0.1/v1/{call}"))
        .map_err(|e| at.unreachable(e))?;
    url.set_query((!query.is_empty()).then_some(query));
    let sent = url.query().unwrap_or_default().to_string();
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    // Over TLS (direct or through a tunnel) the agent knows serve by its certificate;
    // without, by the signature.
    let mut headers = Vec::new();
    if endpoint.starts_with("http://") {
        let token = token(etcd).await?;
        headers.push((
            SIGNATURE,
            sign(&token, crate::ecs::now_ms(), &call, sent.as_bytes()),
        ));
    }
    let asked = async {
        let io = super::tunnel::connect(etcd, &endpoint).await?;
        super::agents_client::call(io, axum::http::Method::GET, &path, &headers, Vec::new()).await
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), asked)
        .await
        .map_err(|_| at.unreachable("no answer within 10 s"))?
        .map_err(|e| at.unreachable(e))?;
    if status == 403 {
        return Err(at.answered(status, &body));
    }
    Ok((status, body))
}
