//! The awslogs log driver as ECS runs it, writing into the local CloudWatch Logs store
//! (`store::logs`) that `serve`'s Logs API and `minifargate logs` read: group
//! `awslogs-group`, stream `<awslogs-stream-prefix>/<container name>/<task id>`,
//! `awslogs-create-group`, `mode` blocking/non-blocking with `max-buffer-size`,
//! `awslogs-datetime-format`/`awslogs-multiline-pattern` joining multi-line events, each
//! event stamped with the time its line was read. The container's json-file stays as
//! Docker's dual-logging local cache.
//!
//! Ref: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html
//! (options, the stream name); moby daemon/logger/awslogs/cloudwatchlogs.go (multi-line
//! joining, the strftime table, blocking vs non-blocking).

use crate::store::logs::{LogStore, Put};
use crate::taskdef::model::{LogConfiguration, LogDriver};
use regex::Regex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often queued events are committed to the store: the upper bound of the delay from
/// a line printed to its event readable through the Logs API (aws logs tail's own poll
/// interval comes on top).
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Docker's default `max-buffer-size` for `mode: non-blocking` (1 MiB).
/// Ref: moby daemon/logger/loggerutils ring buffer default `defaultRingMaxSize = 1 << 20`.
const DEFAULT_MAX_BUFFER: u64 = 1 << 20;

/// What queues before a blocking writer waits: the store is local, so this only bounds
/// memory while it is slow.
const BLOCKING_QUEUE: u64 = 4 << 20;

/// An awslogs option that cannot be used, or the log group missing.
#[derive(Debug, thiserror::Error)]
pub enum AwslogsError {
    #[error("awslogs-group is required for the awslogs log driver")]
    NoGroup,
    /// Docker's and the agent's words when the group does not exist and is not created,
    /// then the local command that makes it (ECS's reason names no fix; here the group is
    /// made on this host: docs/logs.md).
    /// Ref: the agent's task reason on EC2: "CannotStartContainerError: Error response from
    /// daemon: failed to initialize logging driver: failed to create Cloudwatch log stream:
    /// ResourceNotFoundException: The specified log group does not exist."
    #[error(
        "Error response from daemon: failed to initialize logging driver: failed to create \
         Cloudwatch log stream: ResourceNotFoundException: The specified log group does not \
         exist. (set awslogs-create-group to true, or create it: {})",
        create_group_command(.group, .root)
    )]
    GroupMissing { group: String, root: PathBuf },
    #[error(
        "Error response from daemon: failed to initialize logging driver: {option} {value:?}: {why}"
    )]
    BadOption {
        option: &'static str,
        value: String,
        why: String,
    },
    #[error("failed to initialize logging driver: the local CloudWatch Logs store")]
    Store(#[from] crate::store::StoreError),
}

/// The command that creates log group `group` in the store under state root `root`:
/// `minifargate create-log-group --log-group-name GROUP`, with `--root` when it is not the
/// default one.
pub fn create_group_command(group: &str, root: &std::path::Path) -> String {
    let quote = |s: &str| shlex::try_quote(s).map_or_else(|_| format!("{s:?}"), |q| q.into_owned());
    let mut cmd = String::from("minifargate");
    if root != std::path::Path::new(crate::store::DEFAULT_ROOT) {
        cmd.push_str(" --root ");
        cmd.push_str(&quote(&root.to_string_lossy()));
    }
    cmd.push_str(" create-log-group --log-group-name ");
    cmd.push_str(&quote(group));
    cmd
}

/// awslogs options, parsed.
#[derive(Debug, Clone)]
pub struct Options {
    pub group: String,
    pub region: Option<String>,
    pub stream_prefix: Option<String>,
    pub create_group: bool,
    pub non_blocking: bool,
    pub max_buffer: u64,
    pub multiline: Option<Regex>,
}

/// Ref: moby cloudwatchlogs.go `strftimeToRegex`.
fn strftime_regex(directive: &str) -> &'static str {
    match directive {
        "%a" => "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
        "%A" => "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
        "%w" => "[0-6]",
        "%d" => "(?:0[1-9]|[1,2][0-9]|3[0,1])",
        "%b" => "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
        "%B" => {
            "(?:January|February|March|April|May|June|July|August|September|October|November|December)"
        }
        "%m" => "(?:0[1-9]|1[0-2])",
        "%Y" => r"\d{4}",
        "%y" => r"\d{2}",
        "%H" => "(?:[0,1][0-9]|2[0-3])",
        "%I" => "(?:0[0-9]|1[0-2])",
        "%p" => "[A,P]M",
        "%M" => "[0-5][0-9]",
        "%S" => "[0-5][0-9]",
        "%f" => r"\d{6}",
        "%z" => r"[+-]\d{4}",
        "%Z" => "[A-Z]{1,4}T",
        "%j" => "(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])",
        "%L" => r"\.\d{3}",
        _ => "",
    }
}

impl Options {
    /// The awslogs options of `lc`, or None for another driver.
    pub fn of(lc: Option<&LogConfiguration>) -> Result<Option<Options>, AwslogsError> {
        let Some(lc) = lc.filter(|lc| lc.log_driver == Some(LogDriver::Awslogs)) else {
            return Ok(None);
        };
        let empty = BTreeMap::new();
        let o = lc.options.as_ref().unwrap_or(&empty);
        let get = |k: &str| o.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let bad = |option: &'static str, value: &str, why: &str| AwslogsError::BadOption {
            option,
            value: value.into(),
            why: why.into(),
        };
        let group = get("awslogs-group")
            .ok_or(AwslogsError::NoGroup)?
            .to_string();
        let create_group = match get("awslogs-create-group") {
            None => false,
            Some(v) => {
                parse_bool(v).ok_or_else(|| bad("awslogs-create-group", v, "not a boolean"))?
            }
        };
        let non_blocking = match get("mode") {
            None | Some("blocking") => false,
            Some("non-blocking") => true,
            Some(v) => return Err(bad("mode", v, "use blocking or non-blocking")),
        };
        let max_buffer = match get("max-buffer-size") {
            None => DEFAULT_MAX_BUFFER,
            Some(v) => crate::supervisor::logs::logging::parse_size(v)
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("max-buffer-size", v, "not a size (e.g. 25m)"))?,
        };
        let pattern = match (
            get("awslogs-datetime-format"),
            get("awslogs-multiline-pattern"),
        ) {
            (Some(_), Some(_)) => {
                // Ref: moby cloudwatchlogs.go ValidateLogOpt: "you cannot configure log opt
                // 'awslogs-datetime-format' and 'awslogs-multiline-pattern' at the same time".
                return Err(bad(
                    "awslogs-datetime-format",
                    get("awslogs-datetime-format").unwrap_or_default(),
                    "you cannot configure log opt 'awslogs-datetime-format' and \
                     'awslogs-multiline-pattern' at the same time",
                ));
            }
            (Some(f), None) => {
                let seq = Regex::new("%.").expect("a valid regex");
                Some(
                    seq.replace_all(f, |c: &regex::Captures<'_>| strftime_regex(&c[0]))
                        .into_owned(),
                )
            }
            (None, Some(p)) => Some(p.to_string()),
            (None, None) => None,
        };
        let multiline = pattern
            .map(|p| {
                Regex::new(&p).map_err(|e| {
                    bad(
                        "awslogs-multiline-pattern",
                        &p,
                        &format!("awslogs could not parse multiline pattern: {e}"),
                    )
                })
            })
            .transpose()?;
        Ok(Some(Options {
            group,
            region: get("awslogs-region").map(str::to_string),
            stream_prefix: get("awslogs-stream-prefix").map(str::to_string),
            create_group,
            non_blocking,
            max_buffer,
            multiline,
        }))
    }

    /// The stream: `<prefix>/<container name>/<task id>` (ECS); without a prefix (allowed
    /// on EC2 only) Docker names it after the container id, here the runtime id.
    pub fn stream_name(&self, container: &str, task_id: &str, runtime_id: &str) -> String {
        match &self.stream_prefix {
            Some(p) => format!("{p}/{container}/{task_id}"),
            None => runtime_id.to_string(),
        }
    }
}

/// The group and stream container `idx` of task `task_id` writes with awslogs, when it
/// uses awslogs (and its options parse).
pub fn target(
    def: &crate::taskdef::model::ContainerDefinition,
    task_id: &str,
    idx: usize,
) -> Option<(String, String)> {
    let o = Options::of(def.log_configuration.as_ref()).ok()??;
    let stream = o.stream_name(
        def.name_str(),
        task_id,
        &crate::task::runtime_id(task_id, idx),
    );
    Some((o.group, stream))
}

/// Go's strconv.ParseBool, which Docker uses for `awslogs-create-group`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Events waiting to be committed.
#[derive(Default)]
struct Queue {
    events: Vec<(i64, String)>,
    bytes: u64,
    /// A multi-line event being joined: its time, its text, and whether a line joined it
    /// since the last flush (it is flushed once it stays unchanged for a flush).
    pending: Option<(i64, String, bool)>,
    closed: bool,
}

/// The driver of one container: a [`runtime::LogSink`] whose events a thread commits to
/// the store every [`FLUSH_EVERY`].
pub struct Awslogs {
    opts: Options,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Lines a non-blocking driver dropped because its buffer was full.
    pub dropped: Arc<AtomicU64>,
    /// Events forwarding gave up on (`crate::supervisor::logs::forward`).
    pub forward_lost: AtomicU64,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl Awslogs {
    /// Checks the group (creating it with `awslogs-create-group`) and creates the stream,
    /// as Docker does when the container is created; then starts the flusher.
    pub fn start(
        opts: Options,
        root: PathBuf,
        stream: String,
        forward: Option<crate::supervisor::logs::forward::Forwarder>,
    ) -> Result<Arc<Awslogs>, AwslogsError> {
        let mut store = LogStore::open(&root)?;
        // One local store serves every region (docs/logs.md).
        tracing::debug!(group = %opts.group, stream = %stream, region = ?opts.region, "awslogs driver started");
        let now = chrono::Utc::now().timestamp_millis();
        if store.group(&opts.group)?.is_none() {
            if !opts.create_group {
                return Err(AwslogsError::GroupMissing {
                    group: opts.group.clone(),
                    root,
                });
            }
            store.create_group(&opts.group, now)?;
        }
        store.create_stream(&opts.group, &stream, now)?;
        let me = Arc::new(Awslogs {
            opts,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            dropped: Arc::new(AtomicU64::new(0)),
            forward_lost: AtomicU64::new(0),
            flusher: Mutex::new(None),
        });
        let worker = me.clone();
        let handle = threadgate::spawn(
            std::thread::Builder::new().name("awslogs".into()),
            move || worker.flush_loop(store, stream, forward),
        )
        .map_err(|e| AwslogsError::BadOption {
            option: "awslogs-group",
            value: String::new(),
            why: format!("failed to start the log thread: {e}"),
        })?;
        *me.flusher.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(me)
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Waits for the flusher to commit what is queued (after the container's output ended).
    pub fn finish(&self) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.closed = true;
        }
        self.wake.notify_all();
        if let Some(h) = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
    }

    fn push(&self, q: &mut Queue, ts: i64, msg: String) {
        let len = msg.len() as u64 + 26;
        if self.opts.non_blocking {
            // Ref: ECS docs, mode: "non-blocking … log messages are stored in an
            // intermediate buffer … If the buffer fills up, log messages are lost".
            if q.bytes + len > self.opts.max_buffer {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        q.bytes += len;
        q.events.push((ts, msg));
    }

    fn flush_loop(
        &self,
        mut store: LogStore,
        stream: String,
        mut forward: Option<crate::supervisor::logs::forward::Forwarder>,
    ) {
        loop {
            let (batch, closed) = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if !q.closed {
                    q = self
                        .wake
                        .wait_timeout(q, FLUSH_EVERY)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                // A multi-line event nobody added to since the last flush is complete.
                let closed = q.closed;
                let flush_pending = match &mut q.pending {
                    Some((_, _, joined)) if *joined && !closed => {
                        *joined = false;
                        false
                    }
                    Some(_) => true,
                    None => false,
                };
                if flush_pending && let Some((ts, msg, _)) = q.pending.take() {
                    self.push(&mut q, ts, msg);
                }
                q.bytes = 0;
                let batch = std::mem::take(&mut q.events);
                (batch, q.closed)
            };
            self.wake.notify_all();
            if !batch.is_empty() {
                let now = chrono::Utc::now().timestamp_millis();
                match store.put_events(&self.opts.group, &stream, &batch, now, true) {
                    Ok(Put::Stored { .. }) => {}
                    Ok(_) => {
                        tracing::warn!(group = %self.opts.group, stream = %stream, lost = batch.len(), "awslogs: the log group was deleted; events dropped")
                    }
                    Err(e) => {
                        tracing::warn!(group = %self.opts.group, error = %crate::errors::error_chain(&e), lost = batch.len(), "awslogs: failed to store events")
                    }
                }
                if let Some(f) = forward.as_mut() {
                    f.send(&batch);
                    self.forward_lost.store(f.lost(), Ordering::Relaxed);
                }
            }
            if closed {
                let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.events.is_empty() && q.pending.is_none() {
                    return;
                }
            }
        }
    }
}

impl runtime::LogSink for Awslogs {
    fn write(&self, _stream: &'static str, line: &[u8], time: chrono::DateTime<chrono::Utc>) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let ts = time.timestamp_millis();
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if !self.opts.non_blocking {
            // Blocking: the container's writes wait while the store is behind.
            while q.bytes > BLOCKING_QUEUE && !q.closed {
                q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        }
        match &self.opts.multiline {
            // Ref: moby cloudwatchlogs.go processEvent: a line matching the pattern starts
            // a new event; others join the one being built, with their newline.
            Some(re) => {
                if re.is_match(text) {
                    if let Some((pts, pmsg, _)) = q.pending.take() {
                        self.push(&mut q, pts, pmsg);
                    }
                    q.pending = Some((ts, text.to_string(), true));
                } else if let Some((_, msg, joined)) = q.pending.as_mut() {
                    msg.push('\n');
                    msg.push_str(text);
                    *joined = true;
                } else if !text.is_empty() {
                    q.pending = Some((ts, text.to_string(), true));
                }
            }
            // Docker skips empty lines (CloudWatch refuses empty messages).
            None if text.is_empty() => {}
            None => self.push(&mut q, ts, text.to_string()),
        }
    }

    fn close(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((ts, msg, _)) = q.pending.take() {
            self.push(&mut q, ts, msg);
        }
        drop(q);
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::LogSink;

    fn lc(options: serde_json::Value) -> LogConfiguration {
        serde_json::from_value(serde_json::json!({"logDriver": "awslogs", "options": options}))
            .unwrap()
    }

    #[test]
    fn options_and_stream_names() {
        let o = Options::of(Some(&lc(serde_json::json!({
            "awslogs-group": "/ecs/web", "awslogs-stream-prefix": "ecs",
            "awslogs-create-group": "true", "mode": "non-blocking", "max-buffer-size": "25m"
        }))))
        .unwrap()
        .unwrap();
        assert!(o.create_group && o.non_blocking);
        assert_eq!(o.max_buffer, 25 << 20);
        assert_eq!(o.stream_name("web", "abc", "abc-0"), "ecs/web/abc");
        let o = Options::of(Some(&lc(serde_json::json!({"awslogs-group": "g"}))))
            .unwrap()
            .unwrap();
        assert_eq!(o.stream_name("web", "abc", "abc-0"), "abc-0");
        assert!(!o.non_blocking);
        assert!(Options::of(Some(&lc(serde_json::json!({})))).is_err());
        assert!(
            Options::of(Some(&lc(
                serde_json::json!({"awslogs-group": "g", "mode": "fast"})
            )))
            .is_err()
        );
        let both = serde_json::json!({"awslogs-group": "g", "awslogs-datetime-format": "%Y",
                                      "awslogs-multiline-pattern": "^x"});
        assert!(Options::of(Some(&lc(both))).is_err());
        let json_file: LogConfiguration =
            serde_json::from_value(serde_json::json!({"logDriver": "json-file"})).unwrap();
        assert!(Options::of(Some(&json_file)).unwrap().is_none());
    }

    #[test]
    fn datetime_format_joins_lines_into_events() {
        let o = Options::of(Some(&lc(serde_json::json!({
            "awslogs-group": "g", "awslogs-datetime-format": "%Y-%m-%d %H:%M:%S"
        }))))
        .unwrap()
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut s = LogStore::open(d.path()).unwrap();
        s.create_group("g", 0).unwrap();
        drop(s);
        let a = Awslogs::start(o, d.path().to_path_buf(), "st".into(), None).unwrap();
        let t = chrono::Utc::now();
        for l in [
            "2024-05-01 10:00:00 first\n",
            "  at frame 1\n",
            "  at frame 2\n",
            "2024-05-01 10:00:01 second\n",
        ] {
            a.write("stdout", l.as_bytes(), t);
        }
        a.close();
        a.finish();
        let s = LogStore::open(d.path()).unwrap();
        let st = s.stream("g", "st").unwrap().unwrap();
        let ev = s.events(st.id, Default::default(), 10).unwrap();
        let msgs: Vec<&str> = ev.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "2024-05-01 10:00:00 first\n  at frame 1\n  at frame 2",
                "2024-05-01 10:00:01 second"
            ]
        );
        assert_eq!(ev[0].ts_ms, t.timestamp_millis());
    }

    #[test]
    fn non_blocking_drops_and_counts_past_its_buffer() {
        let o = Options::of(Some(&lc(serde_json::json!({
            "awslogs-group": "g", "awslogs-create-group": "true",
            "mode": "non-blocking", "max-buffer-size": "1k"
        }))))
        .unwrap()
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let a = Awslogs::start(o, d.path().to_path_buf(), "st".into(), None).unwrap();
        // Far more than 1 KiB at once, faster than one flush.
        let line = format!("{}\n", "x".repeat(100));
        for _ in 0..100 {
            a.write("stdout", line.as_bytes(), chrono::Utc::now());
        }
        a.close();
        a.finish();
        let dropped = a.dropped.load(Ordering::Relaxed);
        let s = LogStore::open(d.path()).unwrap();
        let st = s.stream("g", "st").unwrap().unwrap();
        let kept = s.events(st.id, Default::default(), 1000).unwrap().len() as u64;
        assert!(dropped > 0, "nothing dropped");
        assert_eq!(kept + dropped, 100);
    }

    #[test]
    fn a_missing_group_fails_like_the_agent() {
        let o = Options::of(Some(&lc(serde_json::json!({"awslogs-group": "nope"}))))
            .unwrap()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = Awslogs::start(o, d.path().to_path_buf(), "st".into(), None)
            .err()
            .unwrap()
            .to_string();
        let root = d.path().display();
        assert!(
            e.ends_with(&format!(
                "failed to create Cloudwatch log stream: ResourceNotFoundException: The \
                 specified log group does not exist. (set awslogs-create-group to true, or \
                 create it: minifargate --root {root} create-log-group --log-group-name nope)"
            )),
            "{e}"
        );
    }

    #[test]
    fn the_fix_names_the_root_only_when_it_is_not_the_default() {
        let default = std::path::Path::new(crate::store::DEFAULT_ROOT);
        assert_eq!(
            create_group_command("/ecs/web", default),
            "minifargate create-log-group --log-group-name /ecs/web"
        );
        assert_eq!(
            create_group_command("#logs", std::path::Path::new("/srv/mf state")),
            "minifargate --root '/srv/mf state' create-log-group --log-group-name '#logs'"
        );
    }
}
