//! CloudWatch Logs across boxes (docs/cluster.md "Logs across boxes"): in cluster mode a
//! task's awslogs events are in the store of the box that runs it, so `serve --cluster`
//! answers GetLogEvents, FilterLogEvents and DescribeLogStreams from its own store and
//! every connected agent's endpoint ([`super::endpoint`]), side by side.
//!
//! FilterLogEvents and DescribeLogStreams are paged across the boxes: each source (this
//! serve's store, each agent) answers its own page; the pages are merged in the order the
//! operation defines and cut at the request's `limit`; the `nextToken` says, per source,
//! which of its pages to ask next and how many of its items were already returned (a
//! source whose page was cut is asked the same page again and its first items skipped).
//! So no item is dropped or repeated between pages, whatever the boxes hold.

use super::endpoint::{Answer, LOGS_OPERATIONS, agent_endpoints, ask_agents};
use crate::logs::{LogsError, LogsResult};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// This serve's own store among the sources.
const HERE: &str = "serve";
/// What a cross-box `nextToken` starts with.
const TOKEN_PREFIX: &str = "mfx1.";

/// Where one source's next page starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// The source's own `nextToken` for that page (none: its first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// How many items of that page were already returned.
    #[serde(default, skip_serializing_if = "is_zero")]
    skip: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A cross-box `nextToken`: each source that has more, and where.
type Cursors = BTreeMap<String, Cursor>;

fn encode_token(c: &Cursors) -> String {
    let json = serde_json::to_vec(c).expect("cursors encode");
    format!("{TOKEN_PREFIX}{}", B64.encode(json))
}

fn decode_token(t: &str) -> Result<Cursors, LogsError> {
    let bad = || {
        LogsError::InvalidParameter(format!(
            "nextToken {t:?} is not one this serve gave (a token of one box's own is not \
             taken across boxes)"
        ))
    };
    let rest = t.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
    let json = B64.decode(rest).map_err(|_| bad())?;
    serde_json::from_slice(&json).map_err(|_| bad())
}

/// `op`'s answer across the boxes, `local` answering a request body from this serve's own
/// store; `None` when this is not cluster mode or not an operation the boxes answer.
pub fn across_boxes(
    op: &str,
    body: &[u8],
    local: impl Fn(&[u8]) -> LogsResult<Value>,
) -> Option<LogsResult<Value>> {
    let etcd = super::serving()?;
    if !LOGS_OPERATIONS.contains(&op) {
        return None;
    }
    Some(super::block_on(answer(etcd, op, body, local)))
}

async fn answer(
    etcd: &'static super::etcd::Etcd,
    op: &str,
    body: &[u8],
    local: impl Fn(&[u8]) -> LogsResult<Value>,
) -> LogsResult<Value> {
    let unreachable = |e: super::etcd::EtcdError| {
        LogsError::InvalidParameter(format!(
            "the cluster's boxes could not be asked: {}",
            crate::errors::error_chain(&e)
        ))
    };
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| LogsError::Serialization(format!("invalid request body: {e}")))?;
    let paged = op != "GetLogEvents";
    // Which sources to ask, each with its own request.
    let cursors: Option<Cursors> = match request["nextToken"].as_str() {
        Some(t) if paged => Some(decode_token(t)?),
        _ => None,
    };
    let endpoints = agent_endpoints(etcd).await.map_err(unreachable)?;
    let sources: Vec<(String, Cursor)> = match &cursors {
        Some(c) => c.iter().map(|(s, c)| (s.clone(), c.clone())).collect(),
        None => std::iter::once(HERE.to_string())
            .chain(endpoints.iter().cloned())
            .map(|s| {
                let c = Cursor {
                    token: None,
                    skip: 0,
                };
                (s, c)
            })
            .collect(),
    };
    let body_for = |c: &Cursor| -> Vec<u8> {
        let mut r = request.clone();
        if paged {
            match &c.token {
                Some(t) => r["nextToken"] = Value::from(t.as_str()),
                None => {
                    if let Some(m) = r.as_object_mut() {
                        m.remove("nextToken");
                    }
                }
            }
        }
        r.to_string().into_bytes()
    };
    let mut answers: Vec<(String, Cursor, LogsResult<Value>)> = Vec::new();
    let mut asks = Vec::new();
    for (source, cursor) in &sources {
        if source == HERE {
            answers.push((source.clone(), cursor.clone(), local(&body_for(cursor))));
        } else if endpoints.contains(source) {
            asks.push((source.clone(), body_for(cursor)));
        } else {
            // A box of an earlier page that is no longer connected: its rest cannot be
            // read now, and that is said, not skipped.
            return Err(LogsError::InvalidParameter(format!(
                "the box at {source} that held more of this listing is no longer connected; \
                 start the listing again"
            )));
        }
    }
    let call = format!("logs/{op}");
    let answers_of = ask_agents(etcd, &call, asks, std::time::Duration::from_secs(10));
    for (endpoint, a) in answers_of.await.map_err(unreachable)? {
        let cursor = sources
            .iter()
            .find(|(s, _)| *s == endpoint)
            .map(|(_, c)| c.clone())
            .unwrap_or(Cursor {
                token: None,
                skip: 0,
            });
        match a {
            Ok(Answer { status: 200, body }) => answers.push((endpoint, cursor, Ok(body))),
            Ok(Answer { body, .. }) => {
                let e = error_of(&body)
                    .unwrap_or_else(|| LogsError::InvalidParameter(body.to_string()));
                answers.push((endpoint, cursor, Err(e)));
            }
            Err(why) => {
                tracing::warn!(error = %why, "{op}: a box did not answer");
                if cursors.is_some() {
                    return Err(LogsError::InvalidParameter(format!(
                        "a box that held more of this listing did not answer: {why}"
                    )));
                }
            }
        }
    }
    if op == "GetLogEvents" {
        return get_log_events(answers);
    }
    merge(op, &request, answers)
}

/// GetLogEvents: the answer of the box that has the stream (with events, if several do).
fn get_log_events(answers: Vec<(String, Cursor, LogsResult<Value>)>) -> LogsResult<Value> {
    let mut first_err = None;
    let mut oks = Vec::new();
    for (source, _, a) in answers {
        match a {
            Ok(v) => oks.push((source == HERE, v)),
            Err(e) => {
                // This serve's own error first, else the first box's.
                if first_err.is_none() || source == HERE {
                    first_err = Some(e);
                }
            }
        }
    }
    if oks.is_empty() {
        return Err(first_err.unwrap_or_else(|| {
            LogsError::ResourceNotFound("no box of the cluster has the log stream".into())
        }));
    }
    oks.sort_by_key(|(here, _)| !here);
    let with_events = oks
        .iter()
        .position(|(_, v)| v["events"].as_array().is_some_and(|e| !e.is_empty()))
        .unwrap_or(0);
    Ok(oks.swap_remove(with_events).1)
}

/// FilterLogEvents (events by time) or DescribeLogStreams (streams in the requested
/// order): every source's page merged and cut at `limit`, with the cursors of the rest.
fn merge(
    op: &str,
    request: &Value,
    answers: Vec<(String, Cursor, LogsResult<Value>)>,
) -> LogsResult<Value> {
    let filter = op == "FilterLogEvents";
    let (list, default_limit) = if filter {
        ("events", 10_000)
    } else {
        ("logStreams", 50)
    };
    let limit = request["limit"]
        .as_u64()
        .map_or(default_limit, |l| l as usize);
    let mut items: Vec<(usize, Value)> = Vec::new();
    let mut pages: Vec<(String, Cursor, Option<String>, usize)> = Vec::new();
    let mut searched = Vec::new();
    let mut first_err = None;
    for (source, cursor, a) in answers {
        let v = match a {
            Ok(v) => v,
            Err(e) => {
                if first_err.is_none() || source == HERE {
                    first_err = Some(e);
                }
                continue;
            }
        };
        let all: Vec<Value> = v[list].as_array().cloned().unwrap_or_default();
        let mut mine: Vec<Value> = all.into_iter().skip(cursor.skip).collect();
        if filter {
            for e in &mut mine {
                if let Some(id) = e["eventId"].as_str() {
                    e["eventId"] = Value::from(event_id(&source, id));
                }
            }
        }
        let at = pages.len();
        items.extend(mine.iter().cloned().map(|i| (at, i)));
        searched.extend(
            v["searchedLogStreams"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        let next = v["nextToken"].as_str().map(str::to_string);
        pages.push((source, cursor, next, mine.len()));
    }
    if pages.is_empty() {
        return Err(first_err.unwrap_or_else(|| {
            LogsError::ResourceNotFound("no box of the cluster answered".into())
        }));
    }
    sort(op, request, &mut items);
    items.truncate(limit);
    let mut taken = vec![0usize; pages.len()];
    for (at, _) in &items {
        taken[*at] += 1;
    }
    let mut cursors = Cursors::new();
    for (i, (source, cursor, next, len)) in pages.into_iter().enumerate() {
        if taken[i] < len {
            // Cut in this page: the same page again, past what was returned.
            cursors.insert(
                source,
                Cursor {
                    token: cursor.token,
                    skip: cursor.skip + taken[i],
                },
            );
        } else if let Some(t) = next {
            cursors.insert(
                source,
                Cursor {
                    token: Some(t),
                    skip: 0,
                },
            );
        }
    }
    let mut out = serde_json::Map::new();
    out.insert(
        list.into(),
        Value::Array(items.into_iter().map(|(_, i)| i).collect()),
    );
    if filter {
        out.insert("searchedLogStreams".into(), Value::Array(searched));
    }
    if !cursors.is_empty() {
        out.insert("nextToken".into(), Value::from(encode_token(&cursors)));
    }
    Ok(Value::Object(out))
}

/// Event `id` of `source` as the cluster's: each box numbers its own events, so the
/// first 20 of the 56 digits become a hash of the source (the same for the same box on
/// every call: clients such as `aws logs tail` tell events apart by their id).
fn event_id(source: &str, id: &str) -> String {
    if id.len() != 56 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return id.to_string();
    }
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:020}{}", &id[20..])
}

/// The operation's order: events by time (then id); streams by name, or by their last
/// event's time with `orderBy: LastEventTime`, reversed with `descending`.
fn sort(op: &str, request: &Value, items: &mut [(usize, Value)]) {
    if op == "FilterLogEvents" {
        items.sort_by_key(|(_, e)| {
            (
                e["timestamp"].as_i64(),
                e["eventId"].as_str().map(str::to_string),
            )
        });
        return;
    }
    if request["orderBy"] == "LastEventTime" {
        items.sort_by_key(|(_, s)| {
            (
                s["lastEventTimestamp"].as_i64().unwrap_or(0),
                s["logStreamName"].as_str().map(str::to_string),
            )
        });
    } else {
        items.sort_by_key(|(_, s)| s["logStreamName"].as_str().map(str::to_string));
    }
    if request["descending"] == true {
        items.reverse();
    }
}

fn error_of(body: &Value) -> Option<LogsError> {
    let message = body["message"].as_str()?.to_string();
    Some(match body["__type"].as_str()? {
        "ResourceNotFoundException" => LogsError::ResourceNotFound(message),
        _ => LogsError::InvalidParameter(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(source_times: &[i64]) -> Value {
        json!({ "events": source_times.iter().map(|t| json!({
            "timestamp": t, "eventId": format!("e{t}"), "message": format!("m{t}")
        })).collect::<Vec<_>>(), "searchedLogStreams": [] })
    }

    fn times(v: &Value) -> Vec<i64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["timestamp"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn pages_across_sources_are_merged_by_time_and_cut_at_the_limit_without_loss() {
        // Two sources, each with one page of three events; a limit of 4 takes the first
        // four by time and leaves each source's rest for the next page.
        let first = merge(
            "FilterLogEvents",
            &json!({"limit": 4}),
            vec![
                (
                    HERE.into(),
                    Cursor {
                        token: None,
                        skip: 0,
                    },
                    Ok(events(&[1, 4, 6])),
                ),
                (
                    "http://b".into(),
                    Cursor {
                        token: None,
                        skip: 0,
                    },
                    Ok(events(&[2, 3, 5])),
                ),
            ],
        )
        .unwrap();
        assert_eq!(times(&first), [1, 2, 3, 4]);
        let cursors = decode_token(first["nextToken"].as_str().unwrap()).unwrap();
        assert_eq!(
            cursors[HERE],
            Cursor {
                token: None,
                skip: 2
            }
        );
        assert_eq!(
            cursors["http://b"],
            Cursor {
                token: None,
                skip: 2
            }
        );
        // The next page: each source answers the same page again; its first items go.
        let second = merge(
            "FilterLogEvents",
            &json!({"limit": 4}),
            vec![
                (HERE.into(), cursors[HERE].clone(), Ok(events(&[1, 4, 6]))),
                (
                    "http://b".into(),
                    cursors["http://b"].clone(),
                    Ok(events(&[2, 3, 5])),
                ),
            ],
        )
        .unwrap();
        assert_eq!(times(&second), [5, 6]);
        assert!(second.get("nextToken").is_none(), "{second}");
    }

    #[test]
    fn each_box_s_event_ids_are_its_own() {
        let id = format!("{:056}", 1);
        let (a, b) = (event_id("http://a", &id), event_id("http://b", &id));
        assert_ne!(a, b);
        assert_eq!(a, event_id("http://a", &id));
        assert_eq!((a.len(), &a[20..]), (56, &id[20..]));
        assert_eq!(event_id("http://a", "e1"), "e1");
    }

    #[test]
    fn a_source_with_more_pages_keeps_its_own_token() {
        let mut page = events(&[1]);
        page["nextToken"] = json!("box-own-token");
        let v = merge(
            "FilterLogEvents",
            &json!({}),
            vec![(
                "http://b".into(),
                Cursor {
                    token: None,
                    skip: 0,
                },
                Ok(page),
            )],
        )
        .unwrap();
        assert_eq!(times(&v), [1]);
        let c = decode_token(v["nextToken"].as_str().unwrap()).unwrap();
        assert_eq!(c["http://b"].token.as_deref(), Some("box-own-token"));
        assert!(decode_token("box-own-token").is_err());
    }

    #[test]
    fn streams_merge_in_the_requested_order() {
        let streams = |names: &[(&str, i64)]| {
            json!({ "logStreams": names.iter().map(|(n, t)| json!({
                "logStreamName": n, "lastEventTimestamp": t
            })).collect::<Vec<_>>() })
        };
        let names = |v: &Value| -> Vec<String> {
            v["logStreams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["logStreamName"].as_str().unwrap().to_string())
                .collect()
        };
        let answers = || {
            vec![
                (
                    HERE.into(),
                    Cursor {
                        token: None,
                        skip: 0,
                    },
                    Ok(streams(&[("a", 5), ("c", 1)])),
                ),
                (
                    "http://b".into(),
                    Cursor {
                        token: None,
                        skip: 0,
                    },
                    Ok(streams(&[("b", 9)])),
                ),
            ]
        };
        let v = merge("DescribeLogStreams", &json!({}), answers()).unwrap();
        assert_eq!(names(&v), ["a", "b", "c"]);
        let v = merge(
            "DescribeLogStreams",
            &json!({"orderBy": "LastEventTime", "descending": true}),
            answers(),
        )
        .unwrap();
        assert_eq!(names(&v), ["b", "a", "c"]);
    }
}
