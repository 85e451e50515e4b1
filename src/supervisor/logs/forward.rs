//! Forwarding an awslogs container's events to a real CloudWatch Logs, opt-in
//! (`MINIFARGATE_AWSLOGS_FORWARD=1` in the environment that starts the task): the batches
//! the driver commits locally also go to PutLogEvents in `awslogs-region`, as the task's
//! execution role (or the host's credentials without one, or with
//! `--execution-credentials host`), within the service's limits, retried with backoff.
//! The forwarder runs on the driver's flush thread, never on the container's output path:
//! a non-blocking container is never stalled by it.

use crate::store::logs::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS};
use crate::supervisor::aws_http::{AwsError, Client, Service};
use crate::supervisor::endpoints::credentials::Execution;
use serde_json::json;
use std::time::Duration;

/// Attempts per batch (the first and the retries), the first backoff (doubling).
const ATTEMPTS: u32 = 4;
const BACKOFF: Duration = Duration::from_millis(250);

/// Whether forwarding is on (`MINIFARGATE_AWSLOGS_FORWARD`, src/config.rs).
pub fn enabled() -> bool {
    crate::config::get().awslogs_forward
}

/// Why forwarding could not start, or a call to CloudWatch Logs failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("failed to start the forwarder's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// No client for the execution identity (the task's warning quotes it).
    #[error(transparent)]
    Identity(#[from] crate::supervisor::endpoints::credentials::CredentialsError),
    #[error("CreateLogGroup {group}: {source}")]
    CreateLogGroup {
        group: String,
        #[source]
        source: AwsError,
    },
    #[error("CreateLogStream {group}/{stream}: {source}")]
    CreateLogStream {
        group: String,
        stream: String,
        #[source]
        source: AwsError,
    },
    #[error("PutLogEvents {group}/{stream}: {source}")]
    PutLogEvents {
        group: String,
        stream: String,
        #[source]
        source: AwsError,
    },
}

/// A stream in a real CloudWatch Logs.
pub struct Forwarder {
    rt: tokio::runtime::Runtime,
    remote: Remote,
}

struct Remote {
    client: Client,
    group: String,
    stream: String,
    create_group: bool,
    ready: bool,
    /// Events given up on after every retry.
    lost: u64,
}

/// Splits `events` (in time order) into PutLogEvents batches within CloudWatch's limits:
/// at most [`MAX_BATCH_EVENTS`] events and [`MAX_BATCH_BYTES`] (message + 26 each), no
/// batch spanning more than 24 h.
/// Ref: https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html
pub fn batches(events: &[(i64, String)]) -> Vec<&[(i64, String)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (ts, msg)) in events.iter().enumerate() {
        let len = msg.len() + 26;
        let full = i - start >= MAX_BATCH_EVENTS
            || bytes + len > MAX_BATCH_BYTES
            || *ts - events[start].0 > MAX_BATCH_SPAN_MS;
        if full && i > start {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

impl Forwarder {
    pub fn new(
        mut execution: Execution,
        region: &str,
        group: &str,
        stream: &str,
        create_group: bool,
    ) -> Result<Forwarder, ForwardError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ForwardError::Runtime)?;
        let cfg = rt.block_on(execution.config(region))?;
        Ok(Forwarder {
            rt,
            remote: Remote {
                client: Client::new(&cfg, Service::Logs, region),
                group: group.into(),
                stream: stream.into(),
                create_group,
                ready: false,
                lost: 0,
            },
        })
    }

    /// Events given up on after every retry.
    pub fn lost(&self) -> u64 {
        self.remote.lost
    }

    /// Sends `events` in as few batches as the limits allow, each retried with backoff;
    /// what still fails is counted in [`Forwarder::lost`] and logged.
    pub fn send(&mut self, events: &[(i64, String)]) {
        if events.is_empty() {
            return;
        }
        // CloudWatch takes a batch's events in time order only.
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|(ts, _)| *ts);
        let Forwarder { rt, remote } = self;
        rt.block_on(remote.send_all(&sorted));
    }
}

impl Remote {
    /// A CloudWatch Logs (AWS JSON 1.1) call.
    /// Ref: https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/CommonParameters.html
    async fn call(&self, op: &str, body: serde_json::Value) -> Result<(), AwsError> {
        self.client
            .json(&format!("Logs_20140328.{op}"), &body)
            .await
            .map(|_| ())
    }

    /// Creates the group (with `awslogs-create-group`) and the stream, once.
    async fn prepare(&mut self) -> Result<(), ForwardError> {
        if self.ready {
            return Ok(());
        }
        let exists = |e: &AwsError| e.code() == Some("ResourceAlreadyExistsException");
        if self.create_group
            && let Err(e) = self
                .call("CreateLogGroup", json!({"logGroupName": self.group}))
                .await
            && !exists(&e)
        {
            return Err(ForwardError::CreateLogGroup {
                group: self.group.clone(),
                source: e,
            });
        }
        if let Err(e) = self
            .call(
                "CreateLogStream",
                json!({"logGroupName": self.group, "logStreamName": self.stream}),
            )
            .await
            && !exists(&e)
        {
            return Err(ForwardError::CreateLogStream {
                group: self.group.clone(),
                stream: self.stream.clone(),
                source: e,
            });
        }
        self.ready = true;
        Ok(())
    }

    async fn send_all(&mut self, sorted: &[(i64, String)]) {
        for batch in batches(sorted) {
            let mut delay = BACKOFF;
            let mut last = None;
            let mut sent = false;
            for attempt in 1..=ATTEMPTS {
                match self.put(batch).await {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(attempt, error = %e, "forwarding log events failed; retrying");
                        last = Some(e);
                        if attempt < ATTEMPTS {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                }
            }
            if !sent {
                self.lost += batch.len() as u64;
                tracing::warn!(group = %self.group, stream = %self.stream, lost = batch.len(), error = %last.map(|e| e.to_string()).unwrap_or_default(), "failed to forward log events to CloudWatch Logs");
            }
        }
    }

    async fn put(&mut self, batch: &[(i64, String)]) -> Result<(), ForwardError> {
        self.prepare().await?;
        let events: Vec<serde_json::Value> = batch
            .iter()
            .map(|(ts, msg)| json!({"timestamp": ts, "message": msg}))
            .collect();
        let body = json!({
            "logGroupName": self.group,
            "logStreamName": self.stream,
            "logEvents": events,
        });
        self.call("PutLogEvents", body).await.map_err(|e| {
            if e.code() == Some("ResourceNotFoundException") {
                // The stream (or group) went: create it again on the next attempt.
                self.ready = false;
            }
            ForwardError::PutLogEvents {
                group: self.group.clone(),
                stream: self.stream.clone(),
                source: e,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_to_the_limits() {
        let many: Vec<(i64, String)> = (0..25_000).map(|i| (i, "x".to_string())).collect();
        let b = batches(&many);
        assert_eq!(
            b.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [10_000, 10_000, 5_000]
        );
        let big: Vec<(i64, String)> = (0..5).map(|i| (i, "y".repeat(400_000))).collect();
        let b = batches(&big);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 2, 1]);
        let day = 86_400_000;
        let spread = vec![(0, "a".into()), (day, "b".into()), (day + 1, "c".into())];
        let b = batches(&spread);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 1]);
        assert!(batches(&[]).is_empty());
    }

    /// The texts of the task warning and the log line, word for word.
    #[test]
    fn errors_read_as_before() {
        let aws = || AwsError::Service {
            status: 400,
            code: "AccessDeniedException".into(),
            message: "no".into(),
        };
        let cases = [
            (
                ForwardError::Runtime(std::io::Error::other("boom")),
                "failed to start the forwarder's runtime: boom",
            ),
            (
                ForwardError::CreateLogGroup {
                    group: "g".into(),
                    source: aws(),
                },
                "CreateLogGroup g: AccessDeniedException: no (HTTP 400)",
            ),
            (
                ForwardError::CreateLogStream {
                    group: "g".into(),
                    stream: "s".into(),
                    source: aws(),
                },
                "CreateLogStream g/s: AccessDeniedException: no (HTTP 400)",
            ),
            (
                ForwardError::PutLogEvents {
                    group: "g".into(),
                    stream: "s".into(),
                    source: aws(),
                },
                "PutLogEvents g/s: AccessDeniedException: no (HTTP 400)",
            ),
            (
                ForwardError::Identity(
                    crate::supervisor::endpoints::credentials::CredentialsError::NoHostProvider,
                ),
                "no AWS credentials on this host",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
