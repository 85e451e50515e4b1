//! The local CloudWatch Logs store: `<root>/logs.db`, log groups, streams and events in
//! SQLite (WAL) beside `state.db`. A separate file so that a chatty container's writes
//! (its supervisor commits a batch every 200 ms) never hold the write lock every ECS
//! operation needs; readers (`serve`'s Logs API, the `logs` verb) never wait for writers.
//!
//! Bounded: events past their group's retention are deleted as they are written and
//! whenever a retention is set, and the whole store keeps under a byte limit by dropping
//! the oldest events (`MINIFARGATE_LOGS_MAX_BYTES`, default 1 GiB).

use super::{StoreError, connect, q};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

/// Ref: PutLogEvents quotas: "The maximum batch size is 1,048,576 bytes … the sum of all
/// event messages in UTF-8, plus 26 bytes for each log event", "The maximum number of log
/// events in a batch is 10,000", "A batch of log events in a single request cannot span
/// more than 24 hours", "None of the log events in the batch can be more than 2 hours in
/// the future", "… more than 14 days in the past … [or] older than the retention period",
/// "The log events in the batch must be in chronological order by their timestamp".
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3_600_000;

/// The store's schema, as one migration (versions go in `user_version`).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS log_groups (
    name           TEXT PRIMARY KEY NOT NULL,
    created_ms     INTEGER NOT NULL,
    retention_days INTEGER,
    stored_bytes   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE IF NOT EXISTS log_streams (
    id                INTEGER PRIMARY KEY,
    grp               TEXT NOT NULL REFERENCES log_groups (name) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    created_ms        INTEGER NOT NULL,
    first_event_ms    INTEGER,
    last_event_ms     INTEGER,
    last_ingestion_ms INTEGER,
    sequence          INTEGER NOT NULL DEFAULT 0,
    stored_bytes      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (grp, name)
) STRICT;

-- id: ingestion order, the eventId.
CREATE TABLE IF NOT EXISTS log_events (
    id        INTEGER PRIMARY KEY,
    stream    INTEGER NOT NULL REFERENCES log_streams (id) ON DELETE CASCADE,
    ts_ms     INTEGER NOT NULL,
    ingest_ms INTEGER NOT NULL,
    message   TEXT NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS log_events_by_stream_time ON log_events (stream, ts_ms, id);
"#;
const SCHEMA_VERSION: i64 = 1;

/// CloudWatch counts each event as its UTF-8 message plus 26 bytes.
/// Ref: https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html
pub const EVENT_OVERHEAD: i64 = 26;

const DAY_MS: i64 = 86_400_000;

/// A log group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub name: String,
    pub created_ms: i64,
    pub retention_days: Option<i64>,
    pub stored_bytes: i64,
}

/// A log stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    pub id: i64,
    pub group: String,
    pub name: String,
    pub created_ms: i64,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    pub last_ingestion_ms: Option<i64>,
    pub sequence: i64,
    pub stored_bytes: i64,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub stream: i64,
    pub ts_ms: i64,
    pub ingest_ms: i64,
    pub message: String,
}

/// Where a write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Stored { sequence: i64 },
    NoGroup,
    NoStream,
}

/// Which events of a stream, and from which end.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventRange {
    /// `ts_ms >= start`.
    pub start: Option<i64>,
    /// `ts_ms < end`.
    pub end: Option<i64>,
    /// Only events after (ascending) or before (descending) this `(ts_ms, id)`.
    pub cursor: Option<(i64, i64)>,
    /// Newest first.
    pub descending: bool,
}

/// The local CloudWatch Logs store.
pub struct LogStore {
    conn: Connection,
}

fn stream_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamRow> {
    Ok(StreamRow {
        id: r.get(0)?,
        group: r.get(1)?,
        name: r.get(2)?,
        created_ms: r.get(3)?,
        first_event_ms: r.get(4)?,
        last_event_ms: r.get(5)?,
        last_ingestion_ms: r.get(6)?,
        sequence: r.get(7)?,
        stored_bytes: r.get(8)?,
    })
}

const STREAM_COLS: &str = "id, grp, name, created_ms, first_event_ms, last_event_ms, \
                           last_ingestion_ms, sequence, stored_bytes";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        stream: r.get(1)?,
        ts_ms: r.get(2)?,
        ingest_ms: r.get(3)?,
        message: r.get(4)?,
    })
}

impl LogStore {
    /// Opens (creating) `<root>/logs.db`.
    pub fn open(root: &Path) -> Result<LogStore, StoreError> {
        super::create_root(root)?;
        let path = root.join("logs.db");
        let conn = connect(&path)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(q("read the logs schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            let tx = super::begin_immediate(&conn).map_err(|source| StoreError::Migrate {
                path: path.clone(),
                version: SCHEMA_VERSION,
                source,
            })?;
            tx.execute_batch(SCHEMA)
                .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                .and_then(|()| tx.commit())
                .map_err(|source| StoreError::Migrate {
                    path,
                    version: SCHEMA_VERSION,
                    source,
                })?;
        }
        Ok(LogStore { conn })
    }

    /// Creates group `name`; false when it exists.
    pub fn create_group(&mut self, name: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO log_groups (name, created_ms) VALUES (?1, ?2)",
                params![name, now],
            )
            .map_err(q("create a log group"))?;
        Ok(n == 1)
    }

    /// Deletes group `name` with its streams and events; false when there is none.
    pub fn delete_group(&mut self, name: &str) -> Result<bool, StoreError> {
        let tx = super::begin_immediate(&self.conn).map_err(q("delete a log group"))?;
        tx.execute(
            "DELETE FROM log_events WHERE stream IN (SELECT id FROM log_streams WHERE grp = ?1)",
            [name],
        )
        .map_err(q("delete a log group's events"))?;
        tx.execute("DELETE FROM log_streams WHERE grp = ?1", [name])
            .map_err(q("delete a log group's streams"))?;
        let n = tx
            .execute("DELETE FROM log_groups WHERE name = ?1", [name])
            .map_err(q("delete a log group"))?;
        tx.commit().map_err(q("delete a log group"))?;
        Ok(n == 1)
    }

    pub fn group(&self, name: &str) -> Result<Option<GroupRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT name, created_ms, retention_days, stored_bytes FROM log_groups WHERE name = ?1",
                [name],
                |r| {
                    Ok(GroupRow {
                        name: r.get(0)?,
                        created_ms: r.get(1)?,
                        retention_days: r.get(2)?,
                        stored_bytes: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(q("read a log group"))
    }

    /// Every group, by name.
    pub fn groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT name, created_ms, retention_days, stored_bytes FROM log_groups ORDER BY name",
            )
            .map_err(q("list log groups"))?;
        st.query_map([], |r| {
            Ok(GroupRow {
                name: r.get(0)?,
                created_ms: r.get(1)?,
                retention_days: r.get(2)?,
                stored_bytes: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(q("list log groups"))
    }

    /// Sets (or clears) a group's retention and deletes what it no longer keeps; false
    /// when there is no such group.
    pub fn set_retention(
        &mut self,
        name: &str,
        days: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE log_groups SET retention_days = ?2 WHERE name = ?1",
                params![name, days],
            )
            .map_err(q("set a log group's retention"))?;
        if n == 1 {
            self.expire(name, now)?;
        }
        Ok(n == 1)
    }

    /// Deletes the events of group `name` older than its retention.
    pub fn expire(&mut self, name: &str, now: i64) -> Result<u64, StoreError> {
        let Some(days) = self.group(name)?.and_then(|g| g.retention_days) else {
            return Ok(0);
        };
        let before = now - days * DAY_MS;
        let tx = super::begin_immediate(&self.conn).map_err(q("expire log events"))?;
        let mut deleted = 0;
        let streams: Vec<i64> = {
            let mut st = tx
                .prepare("SELECT id FROM log_streams WHERE grp = ?1")
                .map_err(q("expire log events"))?;
            st.query_map([name], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(q("expire log events"))?
        };
        for s in streams {
            deleted += delete_events(&tx, "stream = ?1 AND ts_ms < ?2", params![s, before])?;
            refresh_stream(&tx, s)?;
        }
        refresh_group(&tx, name)?;
        tx.commit().map_err(q("expire log events"))?;
        Ok(deleted)
    }

    /// Creates stream `name` in `group`: None when there is no such group, false when the
    /// stream exists.
    pub fn create_stream(
        &mut self,
        group: &str,
        name: &str,
        now: i64,
    ) -> Result<Option<bool>, StoreError> {
        if self.group(group)?.is_none() {
            return Ok(None);
        }
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO log_streams (grp, name, created_ms) VALUES (?1, ?2, ?3)",
                params![group, name, now],
            )
            .map_err(q("create a log stream"))?;
        Ok(Some(n == 1))
    }

    pub fn delete_stream(&mut self, group: &str, name: &str) -> Result<bool, StoreError> {
        let Some(s) = self.stream(group, name)? else {
            return Ok(false);
        };
        let tx = super::begin_immediate(&self.conn).map_err(q("delete a log stream"))?;
        tx.execute("DELETE FROM log_events WHERE stream = ?1", [s.id])
            .map_err(q("delete a log stream's events"))?;
        tx.execute("DELETE FROM log_streams WHERE id = ?1", [s.id])
            .map_err(q("delete a log stream"))?;
        refresh_group(&tx, group)?;
        tx.commit().map_err(q("delete a log stream"))?;
        Ok(true)
    }

    pub fn stream(&self, group: &str, name: &str) -> Result<Option<StreamRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {STREAM_COLS} FROM log_streams WHERE grp = ?1 AND name = ?2"),
                params![group, name],
                stream_row,
            )
            .optional()
            .map_err(q("read a log stream"))
    }

    /// The streams of `group`, by name.
    pub fn streams(&self, group: &str) -> Result<Vec<StreamRow>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {STREAM_COLS} FROM log_streams WHERE grp = ?1 ORDER BY name"
            ))
            .map_err(q("list log streams"))?;
        st.query_map([group], stream_row)
            .and_then(|rows| rows.collect())
            .map_err(q("list log streams"))
    }

    /// Appends `events` (`(timestamp ms, message)`) to a stream, in one transaction;
    /// creates the stream first when `create_stream`. Events past the group's retention
    /// are dropped (the caller reports them), and the store is kept under its limit.
    pub fn put_events(
        &mut self,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
        now: i64,
        create_stream: bool,
    ) -> Result<Put, StoreError> {
        let Some(g) = self.group(group)? else {
            return Ok(Put::NoGroup);
        };
        if create_stream {
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO log_streams (grp, name, created_ms) VALUES (?1, ?2, ?3)",
                    params![group, stream, now],
                )
                .map_err(q("create a log stream"))?;
        }
        let Some(s) = self.stream(group, stream)? else {
            return Ok(Put::NoStream);
        };
        let keep_after = g.retention_days.map(|d| now - d * DAY_MS);
        let tx = super::begin_immediate(&self.conn).map_err(q("store log events"))?;
        let mut bytes = 0i64;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO log_events (stream, ts_ms, ingest_ms, message) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(q("store log events"))?;
            for (ts, msg) in events {
                if keep_after.is_some_and(|k| *ts < k) {
                    continue;
                }
                ins.execute(params![s.id, ts, now, msg])
                    .map_err(q("store log events"))?;
                bytes += msg.len() as i64 + EVENT_OVERHEAD;
            }
        }
        let sequence = s.sequence + 1;
        tx.execute(
            "UPDATE log_streams SET sequence = ?2, last_ingestion_ms = ?3,
                 stored_bytes = stored_bytes + ?4,
                 first_event_ms = (SELECT MIN(ts_ms) FROM log_events WHERE stream = ?1),
                 last_event_ms = (SELECT MAX(ts_ms) FROM log_events WHERE stream = ?1)
             WHERE id = ?1",
            params![s.id, sequence, now, bytes],
        )
        .map_err(q("store log events"))?;
        tx.execute(
            "UPDATE log_groups SET stored_bytes = stored_bytes + ?2 WHERE name = ?1",
            params![group, bytes],
        )
        .map_err(q("store log events"))?;
        tx.commit().map_err(q("store log events"))?;
        self.bound(max_bytes())?;
        Ok(Put::Stored { sequence })
    }

    /// Drops the oldest events (by ingestion) until the store holds at most `max` bytes.
    pub fn bound(&mut self, max: i64) -> Result<(), StoreError> {
        let total: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(stored_bytes), 0) FROM log_groups",
                [],
                |r| r.get(0),
            )
            .map_err(q("measure the log store"))?;
        if total <= max {
            return Ok(());
        }
        // A tenth under the limit, so that a full store does not trim on every write.
        let mut excess = total - max + max / 10;
        let tx = super::begin_immediate(&self.conn).map_err(q("trim the log store"))?;
        let mut cut = 0i64;
        {
            let mut st = tx
                .prepare("SELECT id, length(CAST(message AS BLOB)) FROM log_events ORDER BY id")
                .map_err(q("trim the log store"))?;
            let mut rows = st.query([]).map_err(q("trim the log store"))?;
            while let Some(r) = rows.next().map_err(q("trim the log store"))? {
                let (id, len): (i64, i64) =
                    (r.get(0).map_err(q("trim"))?, r.get(1).map_err(q("trim"))?);
                cut = id;
                excess -= len + EVENT_OVERHEAD;
                if excess <= 0 {
                    break;
                }
            }
        }
        tracing::info!(
            upto_event = cut,
            "log store over its limit: dropping the oldest events"
        );
        let streams: Vec<(i64, String)> = {
            let mut st = tx
                .prepare(
                    "SELECT DISTINCT s.id, s.grp FROM log_streams s JOIN log_events e ON e.stream = s.id WHERE e.id <= ?1",
                )
                .map_err(q("trim the log store"))?;
            st.query_map([cut], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(q("trim the log store"))?
        };
        delete_events(&tx, "id <= ?1", params![cut])?;
        let mut groups: Vec<String> = Vec::new();
        for (s, g) in streams {
            refresh_stream(&tx, s)?;
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        for g in groups {
            refresh_group(&tx, &g)?;
        }
        tx.commit().map_err(q("trim the log store"))
    }

    /// Events of stream `stream` in `range`, at most `limit`, each with `keep` true, in the
    /// range's order.
    pub fn events(
        &self,
        stream: i64,
        range: EventRange,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.events_of(&[stream], range, limit, &mut |_| true)
    }

    /// Events of `streams` in `range`, by `(timestamp, id)`, the first `limit` for which
    /// `keep` is true (scanning at most what it must).
    pub fn events_of(
        &self,
        streams: &[i64],
        range: EventRange,
        limit: usize,
        keep: &mut dyn FnMut(&EventRow) -> bool,
    ) -> Result<Vec<EventRow>, StoreError> {
        if streams.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let ids = streams
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let (cmp, order) = if range.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let sql = format!(
            "SELECT id, stream, ts_ms, ingest_ms, message FROM log_events
             WHERE stream IN ({ids}) AND ts_ms >= ?1 AND ts_ms < ?2 AND (ts_ms, id) {cmp} (?3, ?4)
             ORDER BY ts_ms {order}, id {order}"
        );
        let (cts, cid) = range.cursor.unwrap_or(if range.descending {
            (i64::MAX, i64::MAX)
        } else {
            (i64::MIN, i64::MIN)
        });
        let mut st = self.conn.prepare(&sql).map_err(q("read log events"))?;
        let mut rows = st
            .query(params![
                range.start.unwrap_or(i64::MIN),
                range.end.unwrap_or(i64::MAX),
                cts,
                cid
            ])
            .map_err(q("read log events"))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(q("read log events"))? {
            let e = event_row(r).map_err(q("read log events"))?;
            if keep(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The store-wide byte limit (`MINIFARGATE_LOGS_MAX_BYTES`, src/config.rs).
fn max_bytes() -> i64 {
    i64::try_from(crate::config::get().logs_max_bytes).unwrap_or(i64::MAX)
}

fn delete_events(
    tx: &rusqlite::Transaction<'_>,
    cond: &str,
    p: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    tx.execute(&format!("DELETE FROM log_events WHERE {cond}"), p)
        .map(|n| n as u64)
        .map_err(q("delete log events"))
}

/// Recomputes a stream's first/last event time and stored bytes from its events.
fn refresh_stream(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE log_streams SET
             first_event_ms = (SELECT MIN(ts_ms) FROM log_events WHERE stream = ?1),
             last_event_ms = (SELECT MAX(ts_ms) FROM log_events WHERE stream = ?1),
             stored_bytes = (SELECT COALESCE(SUM(length(CAST(message AS BLOB)) + 26), 0)
                             FROM log_events WHERE stream = ?1)
         WHERE id = ?1",
        [id],
    )
    .map(|_| ())
    .map_err(q("update a log stream"))
}

fn refresh_group(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE log_groups SET stored_bytes =
             (SELECT COALESCE(SUM(stored_bytes), 0) FROM log_streams WHERE grp = ?1)
         WHERE name = ?1",
        [name],
    )
    .map(|_| ())
    .map_err(q("update a log group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LogStore) {
        let d = tempfile::tempdir().unwrap();
        let s = LogStore::open(d.path()).unwrap();
        (d, s)
    }

    fn msgs(rows: &[EventRow]) -> Vec<&str> {
        rows.iter().map(|e| e.message.as_str()).collect()
    }

    #[test]
    fn events_are_read_in_time_order_both_ways_with_cursors() {
        let (_d, mut s) = store();
        assert!(s.create_group("g", 0).unwrap());
        assert!(!s.create_group("g", 0).unwrap());
        let ev = |t: i64, m: &str| (t, m.to_string());
        let now = 10_000;
        assert_eq!(
            s.put_events("g", "s", &[ev(1, "a")], now, false).unwrap(),
            Put::NoStream
        );
        let put = s
            .put_events(
                "g",
                "s",
                &[ev(1, "a"), ev(2, "b"), ev(2, "c"), ev(5, "d")],
                now,
                true,
            )
            .unwrap();
        assert_eq!(put, Put::Stored { sequence: 1 });
        let st = s.stream("g", "s").unwrap().unwrap();
        assert_eq!((st.first_event_ms, st.last_event_ms), (Some(1), Some(5)));
        assert_eq!(st.stored_bytes, 4 * 27);
        let all = s.events(st.id, EventRange::default(), 10).unwrap();
        assert_eq!(msgs(&all), ["a", "b", "c", "d"]);
        let after_b = EventRange {
            cursor: Some((all[1].ts_ms, all[1].id)),
            ..Default::default()
        };
        assert_eq!(msgs(&s.events(st.id, after_b, 10).unwrap()), ["c", "d"]);
        let back = EventRange {
            descending: true,
            ..Default::default()
        };
        assert_eq!(msgs(&s.events(st.id, back, 2).unwrap()), ["d", "c"]);
        let window = EventRange {
            start: Some(2),
            end: Some(5),
            ..Default::default()
        };
        assert_eq!(msgs(&s.events(st.id, window, 10).unwrap()), ["b", "c"]);
        assert_eq!(s.group("g").unwrap().unwrap().stored_bytes, 4 * 27);
    }

    #[test]
    fn retention_deletes_old_events_and_refuses_to_keep_new_old_ones() {
        let (_d, mut s) = store();
        s.create_group("g", 0).unwrap();
        let now = 10 * DAY_MS;
        let evs = vec![
            (now - 3 * DAY_MS, "old".to_string()),
            (now - 1000, "new".to_string()),
        ];
        s.put_events("g", "s", &evs, now, true).unwrap();
        assert!(s.set_retention("g", Some(1), now).unwrap());
        let st = s.stream("g", "s").unwrap().unwrap();
        assert_eq!(
            msgs(&s.events(st.id, EventRange::default(), 10).unwrap()),
            ["new"]
        );
        assert_eq!(st.first_event_ms, Some(now - 1000));
        s.put_events("g", "s", &evs, now, false).unwrap();
        assert_eq!(
            msgs(&s.events(st.id, EventRange::default(), 10).unwrap()),
            ["new", "new"]
        );
        assert!(!s.set_retention("nope", Some(1), now).unwrap());
    }

    #[test]
    fn the_store_keeps_under_its_byte_limit_dropping_the_oldest() {
        let (_d, mut s) = store();
        s.create_group("g", 0).unwrap();
        for i in 0..100 {
            let evs = vec![(i, format!("{i:074}"))];
            s.put_events("g", "s", &evs, 0, true).unwrap();
            s.bound(1000).unwrap();
        }
        let g = s.group("g").unwrap().unwrap();
        assert!(g.stored_bytes <= 1000, "{}", g.stored_bytes);
        let st = s.stream("g", "s").unwrap().unwrap();
        let left = s.events(st.id, EventRange::default(), 1000).unwrap();
        assert_eq!(left.last().unwrap().ts_ms, 99);
        assert!(left.len() >= 9 && left.len() <= 10, "{}", left.len());
    }

    #[test]
    fn deleting_a_group_deletes_its_streams_and_events() {
        let (_d, mut s) = store();
        s.create_group("g", 0).unwrap();
        s.put_events("g", "s", &[(1, "x".into())], 0, true).unwrap();
        assert!(s.delete_group("g").unwrap());
        assert!(!s.delete_group("g").unwrap());
        assert_eq!(s.stream("g", "s").unwrap(), None);
        let n: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM log_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
