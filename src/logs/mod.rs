//! The CloudWatch Logs resource of the core: log groups, streams and events in the local
//! store (`store::logs`, `<root>/logs.db`), with CloudWatch's request and response shapes
//! (logs service-2.json member names) and exception names. `serve` answers them as the
//! `Logs_20140328` API; the awslogs driver of a task writes into the same store.
//!
//! Local differences (said, not silent): one store for every region and account; members a
//! request may carry that this host does not apply (KMS keys, tags, cross-account,
//! log group classes, data protection) are refused with InvalidParameterException naming them.

mod filter;

pub use filter::Pattern;

use crate::ecs::Ecs;
use crate::ecs::table::Op;
use crate::store::StoreError;
use crate::store::logs::{EventRange, EventRow, LogStore, Put, StreamRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A CloudWatch Logs exception.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("InvalidParameterException: {0}")]
    InvalidParameter(String),
    #[error("ResourceNotFoundException: {0}")]
    ResourceNotFound(String),
    #[error("ResourceAlreadyExistsException: {0}")]
    ResourceAlreadyExists(String),
    #[error("SerializationException: {0}")]
    Serialization(String),
    #[error("UnknownOperationException: {0}")]
    UnknownOperation(String),
    /// A failure of this host's store: CloudWatch's 500 is ServiceUnavailableException.
    #[error("ServiceUnavailableException: {}", crate::errors::error_chain(.0))]
    Store(#[from] StoreError),
    /// A response that failed to encode as JSON: CloudWatch's 500.
    #[error("ServiceUnavailableException: failed to encode the response: {0}")]
    Encode(#[source] serde_json::Error),
}

pub type LogsResult<T> = Result<T, LogsError>;

impl LogsError {
    fn invalid(m: impl Into<String>) -> LogsError {
        LogsError::InvalidParameter(m.into())
    }

    /// The exception's name, as CloudWatch spells it in `__type`.
    pub fn name(&self) -> &'static str {
        match self {
            LogsError::InvalidParameter(_) => "InvalidParameterException",
            LogsError::ResourceNotFound(_) => "ResourceNotFoundException",
            LogsError::ResourceAlreadyExists(_) => "ResourceAlreadyExistsException",
            LogsError::Serialization(_) => "SerializationException",
            LogsError::UnknownOperation(_) => "UnknownOperationException",
            LogsError::Store(_) | LogsError::Encode(_) => "ServiceUnavailableException",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            LogsError::Store(_) | LogsError::Encode(_) => 500,
            _ => 400,
        }
    }

    pub fn message(&self) -> String {
        match self {
            LogsError::InvalidParameter(m)
            | LogsError::ResourceNotFound(m)
            | LogsError::ResourceAlreadyExists(m)
            | LogsError::Serialization(m)
            | LogsError::UnknownOperation(m) => m.clone(),
            LogsError::Store(e) => crate::errors::error_chain(e),
            LogsError::Encode(e) => format!("failed to encode the response: {e}"),
        }
    }
}

const NO_GROUP: &str = "The specified log group does not exist.";
const NO_STREAM: &str = "The specified log stream does not exist.";

/// The store, for one operation.
pub fn store(ecs: &Ecs) -> LogsResult<LogStore> {
    Ok(LogStore::open(&ecs.root)?)
}

/// Members a request carries that this host does not apply: refused by name.
fn refuse_others(op: Op, others: &BTreeMap<String, Value>) -> LogsResult<()> {
    let set: Vec<&str> = others
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.as_str())
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    Err(LogsError::invalid(format!(
        "{}: {} not supported by minifargate's local CloudWatch Logs (see docs/logs.md)",
        op.name(),
        set.join(", ")
    )))
}

/// Ref: CreateLogGroup: "Log group names can be between 1 and 512 characters long …
/// a-z, A-Z, 0-9, '_' (underscore), '-' (hyphen), '/' (forward slash), '.' (period), and
/// '#' (number sign)".
pub fn check_group_name(name: &str) -> LogsResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c));
    if ok {
        Ok(())
    } else {
        Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+ \
             (1-512 characters)"
        )))
    }
}

/// Ref: CreateLogStream: "Log stream names can be between 1 and 512 characters long. The
/// ':' (colon) and '*' (asterisk) characters are not allowed."
pub fn check_stream_name(name: &str) -> LogsResult<()> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [^:*]* (1-512 characters)"
        )));
    }
    Ok(())
}

/// The group a request names by `logGroupName` or `logGroupIdentifier` (a name or an ARN).
fn group_of(name: &Option<String>, identifier: &Option<String>) -> LogsResult<String> {
    match (name, identifier) {
        (Some(_), Some(_)) => Err(LogsError::invalid(
            "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
        )),
        (Some(n), None) => Ok(n.clone()),
        (None, Some(id)) => Ok(id
            .strip_prefix("arn:")
            .and_then(|a| a.split_once(":log-group:"))
            .map(|(_, g)| g.trim_end_matches(":*").to_string())
            .unwrap_or_else(|| id.clone())),
        (None, None) => Err(LogsError::invalid(
            "Either logGroupName or logGroupIdentifier must be specified.",
        )),
    }
}

fn arn_base() -> String {
    let ctx = crate::taskdef::arn::AwsContext::from_env();
    format!("arn:aws:logs:{}:{}", ctx.region, ctx.account_id)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateLogGroupRequest {
    pub log_group_name: String,
    #[serde(flatten)]
    pub others: BTreeMap<String, Value>,
}

pub fn create_log_group(ecs: &Ecs, r: &CreateLogGroupRequest) -> LogsResult<Value> {
    refuse_others(Op::CreateLogGroup, &r.others)?;
    check_group_name(&r.log_group_name)?;
    if !store(ecs)?.create_group(&r.log_group_name, crate::ecs::now_ms())? {
        return Err(LogsError::ResourceAlreadyExists(
            "The specified log group already exists".into(),
        ));
    }
    Ok(serde_json::json!({}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroupRequest {
    pub log_group_name: String,
}

pub fn delete_log_group(ecs: &Ecs, r: &LogGroupRequest) -> LogsResult<Value> {
    if !store(ecs)?.delete_group(&r.log_group_name)? {
        return Err(LogsError::ResourceNotFound(NO_GROUP.into()));
    }
    Ok(serde_json::json!({}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStreamRequest {
    pub log_group_name: String,
    pub log_stream_name: String,
}

pub fn create_log_stream(ecs: &Ecs, r: &LogStreamRequest) -> LogsResult<Value> {
    check_stream_name(&r.log_stream_name)?;
    match store(ecs)?.create_stream(&r.log_group_name, &r.log_stream_name, crate::ecs::now_ms())? {
        None => Err(LogsError::ResourceNotFound(NO_GROUP.into())),
        Some(false) => Err(LogsError::ResourceAlreadyExists(
            "The specified log stream already exists".into(),
        )),
        Some(true) => Ok(serde_json::json!({})),
    }
}

pub fn delete_log_stream(ecs: &Ecs, r: &LogStreamRequest) -> LogsResult<Value> {
    let mut s = store(ecs)?;
    if s.group(&r.log_group_name)?.is_none() {
        return Err(LogsError::ResourceNotFound(NO_GROUP.into()));
    }
    if !s.delete_stream(&r.log_group_name, &r.log_stream_name)? {
        return Err(LogsError::ResourceNotFound(NO_STREAM.into()));
    }
    Ok(serde_json::json!({}))
}

/// Ref: PutRetentionPolicy / the `Days` shape: the values CloudWatch accepts.
pub const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRetentionPolicyRequest {
    pub log_group_name: String,
    pub retention_in_days: i64,
}

pub fn put_retention_policy(ecs: &Ecs, r: &PutRetentionPolicyRequest) -> LogsResult<Value> {
    if !RETENTION_DAYS.contains(&r.retention_in_days) {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{}' at 'retentionInDays' failed to satisfy \
             constraint: Member must satisfy enum value set: {:?}",
            r.retention_in_days, RETENTION_DAYS
        )));
    }
    if !store(ecs)?.set_retention(
        &r.log_group_name,
        Some(r.retention_in_days),
        crate::ecs::now_ms(),
    )? {
        return Err(LogsError::ResourceNotFound(NO_GROUP.into()));
    }
    Ok(serde_json::json!({}))
}

pub fn delete_retention_policy(ecs: &Ecs, r: &LogGroupRequest) -> LogsResult<Value> {
    if !store(ecs)?.set_retention(&r.log_group_name, None, crate::ecs::now_ms())? {
        return Err(LogsError::ResourceNotFound(NO_GROUP.into()));
    }
    Ok(serde_json::json!({}))
}

/// `limit` within `1..=max` (default `max`), or InvalidParameterException.
fn limit(v: Option<i64>, max: i64) -> LogsResult<usize> {
    match v {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: \
             Member must have value between 1 and {max}"
        ))),
    }
}

/// An offset token for the Describe operations' pages.
fn offset(token: &Option<String>) -> LogsResult<usize> {
    match token.as_deref() {
        None | Some("") => Ok(0),
        Some(t) => t
            .strip_prefix("mf1.")
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid.")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogGroupsRequest {
    pub log_group_name_prefix: Option<String>,
    pub log_group_name_pattern: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
    #[serde(flatten)]
    pub others: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroup {
    pub log_group_name: String,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_in_days: Option<i64>,
    pub metric_filter_count: i64,
    pub arn: String,
    pub stored_bytes: i64,
    pub log_group_class: &'static str,
    pub log_group_arn: String,
}

pub fn describe_log_groups(ecs: &Ecs, r: &DescribeLogGroupsRequest) -> LogsResult<Value> {
    refuse_others(Op::DescribeLogGroups, &r.others)?;
    if r.log_group_name_prefix.is_some() && r.log_group_name_pattern.is_some() {
        return Err(LogsError::invalid(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
        ));
    }
    let max = limit(r.limit, 50)?;
    let start = offset(&r.next_token)?;
    let base = arn_base();
    let all: Vec<_> = store(ecs)?
        .groups()?
        .into_iter()
        .filter(|g| {
            r.log_group_name_prefix
                .as_deref()
                .is_none_or(|p| g.name.starts_with(p))
                && r.log_group_name_pattern
                    .as_deref()
                    .is_none_or(|p| g.name.to_lowercase().contains(&p.to_lowercase()))
        })
        .collect();
    let end = (start + max).min(all.len());
    let groups: Vec<LogGroup> = all
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|g| LogGroup {
            log_group_name: g.name.clone(),
            creation_time: g.created_ms,
            retention_in_days: g.retention_days,
            metric_filter_count: 0,
            arn: format!("{base}:log-group:{}:*", g.name),
            stored_bytes: g.stored_bytes,
            log_group_class: "STANDARD",
            log_group_arn: format!("{base}:log-group:{}", g.name),
        })
        .collect();
    let mut v = serde_json::json!({ "logGroups": groups });
    if end < all.len() {
        v["nextToken"] = format!("mf1.{end:x}").into();
    }
    Ok(v)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogStreamsRequest {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_name_prefix: Option<String>,
    pub order_by: Option<String>,
    pub descending: Option<bool>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStream {
    pub log_stream_name: String,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ingestion_time: Option<i64>,
    pub upload_sequence_token: String,
    pub arn: String,
    pub stored_bytes: i64,
}

pub fn describe_log_streams(ecs: &Ecs, r: &DescribeLogStreamsRequest) -> LogsResult<Value> {
    let group = group_of(&r.log_group_name, &r.log_group_identifier)?;
    let by_time = match r.order_by.as_deref() {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => true,
        Some(o) => {
            return Err(LogsError::invalid(format!(
                "1 validation error detected: Value '{o}' at 'orderBy' failed to satisfy \
                 constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
            )));
        }
    };
    if by_time && r.log_stream_name_prefix.is_some() {
        // Ref: DescribeLogStreams: "If you order the results by event time, you cannot
        // specify the logStreamNamePrefix parameter."
        return Err(LogsError::invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let max = limit(r.limit, 50)?;
    let start = offset(&r.next_token)?;
    let s = store(ecs)?;
    if s.group(&group)?.is_none() {
        return Err(LogsError::ResourceNotFound(NO_GROUP.into()));
    }
    let mut all: Vec<StreamRow> = s
        .streams(&group)?
        .into_iter()
        .filter(|st| {
            r.log_stream_name_prefix
                .as_deref()
                .is_none_or(|p| st.name.starts_with(p))
        })
        .collect();
    if by_time {
        // A stream without events sorts as the oldest.
        all.sort_by_key(|st| (st.last_event_ms.unwrap_or(i64::MIN), st.name.clone()));
    }
    if r.descending == Some(true) {
        all.reverse();
    }
    let base = arn_base();
    let end = (start + max).min(all.len());
    let streams: Vec<LogStream> = all
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|st| LogStream {
            log_stream_name: st.name.clone(),
            creation_time: st.created_ms,
            first_event_timestamp: st.first_event_ms,
            last_event_timestamp: st.last_event_ms,
            last_ingestion_time: st.last_ingestion_ms,
            upload_sequence_token: sequence_token(st.sequence),
            arn: format!("{base}:log-group:{group}:log-stream:{}", st.name),
            stored_bytes: st.stored_bytes,
        })
        .collect();
    let mut v = serde_json::json!({ "logStreams": streams });
    if end < all.len() {
        v["nextToken"] = format!("mf1.{end:x}").into();
    }
    Ok(v)
}

fn sequence_token(n: i64) -> String {
    format!("{n:056}")
}

/// A GetLogEvents token: which way, and the `(timestamp, eventId)` it continues from.
fn parse_event_token(t: &str) -> LogsResult<(bool, (i64, i64))> {
    let bad = || LogsError::invalid("The specified nextToken is invalid.");
    let (dir, rest) = t.split_once('/').ok_or_else(bad)?;
    let (ts, id) = rest.split_once('/').ok_or_else(bad)?;
    let forward = match dir {
        "f" => true,
        "b" => false,
        _ => return Err(bad()),
    };
    Ok((
        forward,
        (
            ts.parse().map_err(|_| bad())?,
            id.parse().map_err(|_| bad())?,
        ),
    ))
}

fn event_token(forward: bool, at: (i64, i64)) -> String {
    format!("{}/{}/{}", if forward { "f" } else { "b" }, at.0, at.1)
}

/// Ref: GetLogEvents/FilterLogEvents: a response holds at most 1 MB of events.
const RESPONSE_BYTES: usize = 1 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLogEventsRequest {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_name: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
    pub start_from_head: Option<bool>,
    /// Accepted: nothing is masked here (no data protection policies).
    #[allow(dead_code)]
    pub unmask: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputLogEvent {
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
}

/// At most [`RESPONSE_BYTES`] of `events` (the first ones).
fn within_response(mut events: Vec<EventRow>) -> Vec<EventRow> {
    let mut total = 0;
    let keep = events
        .iter()
        .take_while(|e| {
            total += e.message.len() + 26;
            total <= RESPONSE_BYTES
        })
        .count()
        .max(1);
    events.truncate(keep);
    events
}

pub fn get_log_events(ecs: &Ecs, r: &GetLogEventsRequest) -> LogsResult<Value> {
    let group = group_of(&r.log_group_name, &r.log_group_identifier)?;
    let max = limit(r.limit, 10_000)?;
    let s = store(ecs)?;
    if s.group(&group)?.is_none() {
        return Err(LogsError::ResourceNotFound(NO_GROUP.into()));
    }
    let stream = s
        .stream(&group, &r.log_stream_name)?
        .ok_or_else(|| LogsError::ResourceNotFound(NO_STREAM.into()))?;
    let token = r.next_token.as_deref().map(parse_event_token).transpose()?;
    // Ref: GetLogEvents: "If the value is false, the latest log events are returned first.
    // If the value is true, the earliest log events are returned first. If you are using a
    // previous nextForwardToken value as the nextToken in this operation, you must specify
    // true for startFromHead." Events come back oldest first either way.
    let forward = match token {
        Some((f, _)) => f,
        None => r.start_from_head == Some(true),
    };
    let range = EventRange {
        start: r.start_time,
        end: r.end_time,
        cursor: token.map(|(_, at)| at),
        descending: !forward,
    };
    let mut events = within_response(s.events(stream.id, range, max)?);
    if !forward {
        events.reverse();
    }
    let (first, last) = match (events.first(), events.last()) {
        (Some(a), Some(b)) => ((a.ts_ms, a.id), (b.ts_ms, b.id)),
        // Nothing more this way: the same token again (how readers know they are at the
        // end); without one, the edge the read started from.
        _ => {
            let edge = token.map(|(_, at)| at).unwrap_or(if forward {
                (i64::MIN, i64::MIN)
            } else {
                (i64::MAX, i64::MAX)
            });
            (edge, edge)
        }
    };
    let out: Vec<OutputLogEvent> = events
        .into_iter()
        .map(|e| OutputLogEvent {
            timestamp: e.ts_ms,
            message: e.message,
            ingestion_time: e.ingest_ms,
        })
        .collect();
    Ok(serde_json::json!({
        "events": out,
        "nextForwardToken": event_token(true, last),
        "nextBackwardToken": event_token(false, first),
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEventsRequest {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_names: Option<Vec<String>>,
    pub log_stream_name_prefix: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub filter_pattern: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
    /// Deprecated; events are always interleaved.
    #[allow(dead_code)]
    pub interleaved: Option<bool>,
    /// Accepted: nothing is masked here (no data protection policies).
    #[allow(dead_code)]
    pub unmask: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilteredLogEvent {
    pub log_stream_name: String,
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
    pub event_id: String,
}

/// How many events FilterLogEvents looks at per call before it answers with a page (and
/// a nextToken), so that a rare pattern over a large store never holds a request long.
const FILTER_SCAN: usize = 100_000;

pub fn filter_log_events(ecs: &Ecs, r: &FilterLogEventsRequest) -> LogsResult<Value> {
    let group = group_of(&r.log_group_name, &r.log_group_identifier)?;
    if r.log_stream_names.is_some() && r.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "You cannot specify both logStreamNames and logStreamNamePrefix.",
        ));
    }
    let max = limit(r.limit, 10_000)?;
    let pattern = Pattern::parse(r.filter_pattern.as_deref().unwrap_or(""))
        .map_err(|e| LogsError::invalid(e.to_string()))?;
    let s = store(ecs)?;
    if s.group(&group)?.is_none() {
        return Err(LogsError::ResourceNotFound(NO_GROUP.into()));
    }
    let streams: Vec<StreamRow> = s
        .streams(&group)?
        .into_iter()
        .filter(|st| {
            r.log_stream_names
                .as_ref()
                .is_none_or(|n| n.contains(&st.name))
                && r.log_stream_name_prefix
                    .as_deref()
                    .is_none_or(|p| st.name.starts_with(p))
        })
        .collect();
    let cursor = match r.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => match parse_event_token(t)? {
            (true, at) => Some(at),
            (false, _) => return Err(LogsError::invalid("The specified nextToken is invalid.")),
        },
    };
    let ids: Vec<i64> = streams.iter().map(|s| s.id).collect();
    let range = EventRange {
        start: r.start_time,
        end: r.end_time,
        cursor,
        descending: false,
    };
    // One more than asked for tells whether there is a next page; the scan budget ends a
    // page early (with a token to go on) on a sparse match.
    let mut scanned = 0usize;
    let mut last_scanned = None;
    let mut budget_hit = false;
    let mut rows = s.events_of(&ids, range, max + 1, &mut |e| {
        scanned += 1;
        last_scanned = Some((e.ts_ms, e.id));
        if scanned > FILTER_SCAN {
            budget_hit = true;
        }
        !budget_hit && pattern.matches(&e.message)
    })?;
    let mut more = rows.len() > max || budget_hit;
    rows.truncate(max);
    let before = rows.len();
    let rows = within_response(rows);
    more |= rows.len() < before;
    let next = if more {
        rows.last()
            .map(|e| (e.ts_ms, e.id))
            .or(last_scanned)
            .map(|at| event_token(true, at))
    } else {
        None
    };
    let names: BTreeMap<i64, &str> = streams.iter().map(|s| (s.id, s.name.as_str())).collect();
    let events: Vec<FilteredLogEvent> = rows
        .into_iter()
        .map(|e| FilteredLogEvent {
            log_stream_name: names
                .get(&e.stream)
                .copied()
                .unwrap_or_default()
                .to_string(),
            timestamp: e.ts_ms,
            message: e.message,
            ingestion_time: e.ingest_ms,
            event_id: format!("{:056}", e.id),
        })
        .collect();
    let searched: Vec<Value> = streams
        .iter()
        .map(|s| serde_json::json!({"logStreamName": s.name, "searchedCompletely": next.is_none()}))
        .collect();
    let mut v = serde_json::json!({ "events": events, "searchedLogStreams": searched });
    if let Some(t) = next {
        v["nextToken"] = t.into();
    }
    Ok(v)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputLogEvent {
    pub timestamp: i64,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutLogEventsRequest {
    pub log_group_name: String,
    pub log_stream_name: String,
    pub log_events: Vec<InputLogEvent>,
    /// Ignored, as CloudWatch has ignored it since 2023 (PutLogEvents: "sequenceToken …
    /// is now ignored").
    #[allow(dead_code)]
    pub sequence_token: Option<String>,
    #[serde(flatten)]
    pub others: BTreeMap<String, Value>,
}

/// PutLogEvents' batch limits, with their reference: beside the store
/// (`crate::store::logs`), below the supervisor, whose forwarder to CloudWatch keeps them
/// too.
pub use crate::store::logs::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS};
// Ref: PutLogEvents quotas (quoted at `crate::store::logs::MAX_BATCH_BYTES`).
const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
const MAX_PAST_MS: i64 = 14 * 86_400_000;

/// Which events of a batch CloudWatch would not take, and what to keep.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    pub too_new_start: Option<usize>,
    pub too_old_end: Option<usize>,
    pub expired_end: Option<usize>,
}

/// Checks a batch against CloudWatch's limits: an error for a batch CloudWatch refuses
/// whole; otherwise the events it keeps and which it rejects.
pub fn check_batch(
    events: &[InputLogEvent],
    now: i64,
    retention_days: Option<i64>,
) -> LogsResult<(Vec<(i64, String)>, Rejected)> {
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_BATCH_EVENTS} (got {})",
            events.len()
        )));
    }
    let bytes: usize = events.iter().map(|e| e.message.len() + 26).sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(LogsError::invalid(format!(
            "Upload too large: {bytes} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        return Err(LogsError::invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    let span = events[events.len() - 1].timestamp - events[0].timestamp;
    if span > MAX_BATCH_SPAN_MS {
        return Err(LogsError::invalid(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    let mut rej = Rejected::default();
    let mut keep = Vec::new();
    let expire_before = retention_days.map(|d| now - d * 86_400_000);
    for (i, e) in events.iter().enumerate() {
        if e.timestamp > now + MAX_FUTURE_MS {
            rej.too_new_start.get_or_insert(i);
        } else if e.timestamp < now - MAX_PAST_MS {
            rej.too_old_end = Some(i + 1);
        } else if expire_before.is_some_and(|b| e.timestamp < b) {
            rej.expired_end = Some(i + 1);
        } else {
            keep.push((e.timestamp, e.message.clone()));
        }
    }
    Ok((keep, rej))
}

pub fn put_log_events(ecs: &Ecs, r: &PutLogEventsRequest) -> LogsResult<Value> {
    refuse_others(Op::PutLogEvents, &r.others)?;
    let now = crate::ecs::now_ms();
    let mut s = store(ecs)?;
    let group = s
        .group(&r.log_group_name)?
        .ok_or_else(|| LogsError::ResourceNotFound(NO_GROUP.into()))?;
    let (keep, rej) = check_batch(&r.log_events, now, group.retention_days)?;
    let sequence = match s.put_events(&r.log_group_name, &r.log_stream_name, &keep, now, false)? {
        Put::Stored { sequence } => sequence,
        Put::NoGroup => return Err(LogsError::ResourceNotFound(NO_GROUP.into())),
        Put::NoStream => return Err(LogsError::ResourceNotFound(NO_STREAM.into())),
    };
    let mut v = serde_json::json!({ "nextSequenceToken": sequence_token(sequence) });
    if rej != Rejected::default() {
        let mut info = serde_json::Map::new();
        if let Some(i) = rej.too_new_start {
            info.insert("tooNewLogEventStartIndex".into(), i.into());
        }
        if let Some(i) = rej.too_old_end {
            info.insert("tooOldLogEventEndIndex".into(), i.into());
        }
        if let Some(i) = rej.expired_end {
            info.insert("expiredLogEventEndIndex".into(), i.into());
        }
        v["rejectedLogEventsInfo"] = info.into();
    }
    Ok(v)
}

/// The events of an awslogs stream through GetLogEvents, as log entries (for `logs` and
/// the console): on
/// the first read (`first` is `Some(tail)`) the last `tail` or all of them; then those
/// after `token`. A stream not (yet) there has none.
pub fn stream_entries(
    ecs: &Ecs,
    group: &str,
    stream: &str,
    token: &mut Option<String>,
    first: Option<Option<usize>>,
) -> anyhow::Result<Vec<runtime::LogEntry>> {
    let mut out = Vec::new();
    loop {
        let mut req = GetLogEventsRequest {
            log_group_name: Some(group.to_string()),
            log_stream_name: stream.to_string(),
            next_token: token.clone(),
            start_from_head: Some(true),
            ..Default::default()
        };
        if token.is_none()
            && let Some(Some(n)) = first
        {
            req.start_from_head = Some(false);
            req.limit = Some(n.clamp(1, 10_000) as i64);
        }
        let r = match get_log_events(ecs, &req) {
            Ok(r) => r,
            Err(LogsError::ResourceNotFound(_)) => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let events = r["events"].as_array().cloned().unwrap_or_default();
        *token = r["nextForwardToken"].as_str().map(str::to_string);
        for e in &events {
            let ts = e["timestamp"].as_i64().unwrap_or_default();
            let time = chrono::DateTime::from_timestamp_millis(ts)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            out.push(runtime::LogEntry {
                log: format!("{}\n", e["message"].as_str().unwrap_or_default()),
                stream: "stdout".into(),
                time,
            });
        }
        // --tail: one read; otherwise until a read returns nothing more.
        if events.is_empty() || matches!(first, Some(Some(_))) {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, m: &str) -> InputLogEvent {
        InputLogEvent {
            timestamp: t,
            message: m.into(),
        }
    }

    #[test]
    fn batches_are_checked_like_cloudwatch() {
        let now = 100 * 86_400_000;
        let (keep, rej) = check_batch(&[ev(now - 1, "a"), ev(now, "b")], now, None).unwrap();
        assert_eq!(keep.len(), 2);
        assert_eq!(rej, Rejected::default());
        assert!(check_batch(&[ev(now, "a"), ev(now - 1, "b")], now, None).is_err());
        assert!(check_batch(&[], now, None).is_err());
        let big = "x".repeat(MAX_BATCH_BYTES);
        assert!(check_batch(&[ev(now, &big)], now, None).is_err());
        let day = 86_400_000;
        assert!(check_batch(&[ev(now - day - 1, "a"), ev(now, "b")], now, None).is_err());
        let (keep, rej) = check_batch(
            &[ev(now - day - 1, "expired"), ev(now - 1000, "kept")],
            now,
            Some(1),
        )
        .unwrap();
        assert_eq!(keep, vec![(now - 1000, "kept".to_string())]);
        assert_eq!(rej.expired_end, Some(1));
        let (keep, rej) = check_batch(
            &[ev(now - 1000, "kept"), ev(now + 3 * 3_600_000, "future")],
            now,
            None,
        )
        .unwrap();
        assert_eq!(keep.len(), 1);
        assert_eq!(
            rej,
            Rejected {
                too_new_start: Some(1),
                too_old_end: None,
                expired_end: None
            }
        );
    }

    #[test]
    fn names_and_tokens() {
        assert!(check_group_name("/ecs/web-app_1.x#2").is_ok());
        assert!(check_group_name("bad:name").is_err());
        assert!(check_group_name("").is_err());
        assert!(check_stream_name("ecs/web/abc").is_ok());
        assert!(check_stream_name("a:b").is_err());
        assert_eq!(
            parse_event_token(&event_token(true, (5, 7))).unwrap(),
            (true, (5, 7))
        );
        assert!(parse_event_token("x/1/2").is_err());
        assert_eq!(
            group_of(
                &None,
                &Some("arn:aws:logs:us-east-1:1:log-group:/ecs/web:*".into())
            )
            .unwrap(),
            "/ecs/web"
        );
    }
}
