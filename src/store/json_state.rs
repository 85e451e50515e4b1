//! A service's state kept whole as JSON (Application Auto Scaling's, CloudWatch's alarms'):
//! on one box in one file (`super::json_file`), in `serve --cluster` as items of the
//! `control_docs` rows, which the serves share through etcd (`super::replica`).
//!
//! The state is a JSON object; each of its maps becomes one item per entry
//! (`<field>/<key>`), each of its lists one item per group of elements ([`Group`]: an
//! alarm's history, a target's activities), anything else one item (`<field>`). A change
//! rewrites only the items that changed, so a write sends etcd the alarm or target it
//! touched, not the whole state.

use super::{Store, StoreError, q};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A list of the state kept as one item per group of its elements: those whose member
/// `by` is the same, in the list's order; read back, the groups' elements are merged in
/// the order of their member `order` (a time).
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pub field: &'static str,
    pub by: &'static str,
    pub order: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum JsonStateError {
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} does not decode")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to encode the {owner} state")]
    Encode {
        owner: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a service's state is kept.
#[derive(Debug)]
pub enum Kept {
    /// Nowhere (unit tests).
    Memory,
    /// One box: this JSON file, written whole.
    File(PathBuf),
    /// `serve --cluster`: the `control_docs` rows of `owner`.
    Rows(Box<Rows>),
}

/// The `control_docs` rows of one owner, through a connection held open (its
/// `data_version` tells when another connection, the replica applying another serve's
/// write, changed them).
pub struct Rows {
    owner: &'static str,
    groups: &'static [Group],
    store: Store,
    seen: i64,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("owner", &self.owner).finish()
    }
}

impl Kept {
    /// The state kept in `file` (one box), or in the rows of `owner` in the store under
    /// `root` (`rows`: a cluster's serve); with the state as kept (the default when none
    /// is). An undecodable file or row is an error naming it, never an empty state.
    pub fn open<T: DeserializeOwned + Default>(
        root: Option<&Path>,
        file: &str,
        owner: &'static str,
        groups: &'static [Group],
        rows: bool,
    ) -> Result<(Kept, T), JsonStateError> {
        let Some(root) = root else {
            return Ok((Kept::Memory, T::default()));
        };
        if rows {
            let store = Store::open(root)?;
            let seen = store.data_version()?;
            let mut r = Rows {
                owner,
                groups,
                store,
                seen,
            };
            let state = r.read()?;
            return Ok((Kept::Rows(Box::new(r)), state));
        }
        let path = root.join(file);
        if !path.exists() {
            return Ok((Kept::File(path), T::default()));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| JsonStateError::Read {
            path: path.clone(),
            source,
        })?;
        let state = serde_json::from_str(&text).map_err(|source| JsonStateError::Decode {
            what: path.display().to_string(),
            source,
        })?;
        Ok((Kept::File(path), state))
    }

    /// Keeps `state` (in the rows: only the items that changed).
    pub fn save<T: Serialize>(&mut self, state: &T) -> Result<(), JsonStateError> {
        match self {
            Kept::Memory => Ok(()),
            Kept::File(path) => {
                super::json_file::replace(path, state).map_err(|source| JsonStateError::Write {
                    path: path.clone(),
                    source,
                })
            }
            Kept::Rows(r) => {
                let value =
                    serde_json::to_value(state).map_err(|source| JsonStateError::Encode {
                        owner: r.owner,
                        source,
                    })?;
                r.store
                    .put_control_docs(r.owner, &items(&value, r.groups))?;
                Ok(())
            }
        }
    }

    /// Replaces `state` with the rows' when another connection changed them since they
    /// were last read (another serve's write applied); when they cannot be read, says so
    /// in the log (naming `what`) and leaves `state` as it was.
    pub fn refresh<T: DeserializeOwned + Default>(&mut self, state: &mut T, what: &str) {
        match self.changed::<T>() {
            Ok(Some(now)) => *state = now,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
                "{what}: the cluster's state cannot be read; answering with the last one read"),
        }
    }

    /// The state as the rows have it now, when another connection changed them since it
    /// was last read (`None`: unchanged, or not kept in rows).
    pub fn changed<T: DeserializeOwned + Default>(&mut self) -> Result<Option<T>, JsonStateError> {
        let Kept::Rows(r) = self else {
            return Ok(None);
        };
        let now = r.store.data_version()?;
        if now == r.seen {
            return Ok(None);
        }
        let state = r.read()?;
        r.seen = now;
        Ok(Some(state))
    }
}

/// A service's state in memory, and where it is kept (Application Auto Scaling's,
/// CloudWatch's alarms'): read again when another serve changed it, saved whole.
#[derive(Debug)]
pub struct Held<T> {
    kept: std::sync::Mutex<Kept>,
    state: std::sync::Mutex<T>,
    /// What the state is, as the log names it.
    what: &'static str,
}

impl<T: DeserializeOwned + Serialize + Default> Held<T> {
    /// The state `what` kept as [`Kept::open`] finds it.
    pub fn open(
        root: Option<&Path>,
        file: &str,
        owner: &'static str,
        groups: &'static [Group],
        rows: bool,
        what: &'static str,
    ) -> Result<Held<T>, JsonStateError> {
        let (kept, state) = Kept::open(root, file, owner, groups, rows)?;
        Ok(Held {
            kept: std::sync::Mutex::new(kept),
            state: std::sync::Mutex::new(state),
            what,
        })
    }

    /// The state, as another serve of the cluster may have changed it.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refresh(&mut *s, self.what);
        s
    }

    /// Keeps `state` ([`Kept::save`]).
    pub fn save(&self, state: &T) -> Result<(), JsonStateError> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .save(state)
    }
}

impl Rows {
    fn read<T: DeserializeOwned + Default>(&mut self) -> Result<T, JsonStateError> {
        let items = self.store.control_docs(self.owner)?;
        let value =
            value_of(&items, self.groups).map_err(|(item, source)| JsonStateError::Decode {
                what: format!("item {item:?} of the {} state", self.owner),
                source,
            })?;
        serde_json::from_value(value).map_err(|source| JsonStateError::Decode {
            what: format!("the {} state", self.owner),
            source,
        })
    }
}

/// The items of `state` (a JSON object): item name → its JSON.
fn items(state: &Value, groups: &[Group]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Value::Object(fields) = state else {
        return out;
    };
    for (field, v) in fields {
        match (v, groups.iter().find(|g| g.field == field)) {
            (Value::Object(entries), _) => {
                for (k, e) in entries {
                    out.insert(format!("{field}/{k}"), e.to_string());
                }
            }
            (Value::Array(list), Some(g)) => {
                let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
                for e in list {
                    let key = match &e[g.by] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    by.entry(key).or_default().push(e);
                }
                for (k, es) in by {
                    out.insert(
                        format!("{field}/{k}"),
                        Value::from_iter(es.into_iter().cloned()).to_string(),
                    );
                }
            }
            (v, _) => {
                out.insert(field.clone(), v.to_string());
            }
        }
    }
    out
}

/// The state (a JSON object) of `items`; an item that does not decode: its name and why.
fn value_of(
    items: &BTreeMap<String, String>,
    groups: &[Group],
) -> Result<Value, (String, serde_json::Error)> {
    let mut fields = Map::new();
    for (item, doc) in items {
        let v: Value = serde_json::from_str(doc).map_err(|e| (item.clone(), e))?;
        match item.split_once('/') {
            None => {
                fields.insert(item.clone(), v);
            }
            Some((field, key)) => match groups.iter().find(|g| g.field == field) {
                Some(_) => {
                    let list = fields
                        .entry(field)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let (Value::Array(l), Value::Array(es)) = (list, v) {
                        l.extend(es);
                    }
                }
                None => {
                    let map = fields
                        .entry(field)
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(m) = map {
                        m.insert(key.to_string(), v);
                    }
                }
            },
        }
    }
    for g in groups {
        if let Some(Value::Array(l)) = fields.get_mut(g.field) {
            l.sort_by(|a, b| {
                let (a, b) = (a[g.order].as_f64(), b[g.order].as_f64());
                a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
            });
        }
    }
    Ok(Value::Object(fields))
}

impl Store {
    /// The `control_docs` items of `owner`: item → JSON.
    pub fn control_docs(&self, owner: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT item, doc FROM control_docs WHERE owner = ?1")
            .map_err(q("read the control-plane documents"))?;
        let rows = st
            .query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(q("read the control-plane documents"))?;
        rows.collect::<Result<_, _>>()
            .map_err(q("read the control-plane documents"))
    }

    /// Makes the items of `owner` be `items`, in one transaction, writing only the
    /// items that changed (the replica logs a change only where one was made).
    pub fn put_control_docs(
        &self,
        owner: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let failed = q("write the control-plane documents");
        let tx = self.conn.unchecked_transaction().map_err(failed)?;
        let had = self.control_docs(owner)?;
        for (item, doc) in items {
            if had.get(item) != Some(doc) {
                tx.execute(
                    "INSERT INTO control_docs (owner, item, doc) VALUES (?1, ?2, ?3)
                     ON CONFLICT (owner, item) DO UPDATE SET doc = excluded.doc",
                    rusqlite::params![owner, item, doc],
                )
                .map_err(q("write the control-plane documents"))?;
            }
        }
        for item in had.keys().filter(|i| !items.contains_key(*i)) {
            tx.execute(
                "DELETE FROM control_docs WHERE owner = ?1 AND item = ?2",
                rusqlite::params![owner, item],
            )
            .map_err(q("write the control-plane documents"))?;
        }
        tx.commit().map_err(q("write the control-plane documents"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const GROUPS: &[Group] = &[Group {
        field: "history",
        by: "Name",
        order: "At",
    }];

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct State {
        alarms: BTreeMap<String, Value>,
        history: Vec<Value>,
        counter: i64,
    }

    fn state() -> State {
        let mut s = State::default();
        s.alarms.insert("a\nb".into(), serde_json::json!({"x": 1}));
        s.alarms.insert("c".into(), serde_json::json!({"x": 2}));
        for (name, at) in [("a", 1.0), ("c", 2.0), ("a", 3.0)] {
            s.history.push(serde_json::json!({"Name": name, "At": at}));
        }
        s.counter = 7;
        s
    }

    /// The state goes into items and comes back as it was; the lists by group, merged in
    /// their order.
    #[test]
    fn a_state_is_its_items_and_back() {
        let s = state();
        let items = items(&serde_json::to_value(&s).unwrap(), GROUPS);
        let names: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "alarms/a\nb",
                "alarms/c",
                "counter",
                "history/a",
                "history/c"
            ]
        );
        let back: State = serde_json::from_value(value_of(&items, GROUPS).unwrap()).unwrap();
        assert_eq!(back, s);
        let empty: State =
            serde_json::from_value(value_of(&BTreeMap::new(), GROUPS).unwrap()).unwrap();
        assert_eq!(empty, State::default());
    }

    /// In rows, a save writes only what changed (one alarm changed: one row logged for
    /// the other serves), another connection's change is seen, a row that does not decode
    /// is an error naming it.
    #[test]
    fn rows_change_item_by_item_and_follow_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let other = Store::open(dir.path()).unwrap();
        super::super::replica::create_log(&other).unwrap();
        let (mut kept, s): (Kept, State) =
            Kept::open(Some(dir.path()), "x.json", "alarms", GROUPS, true).unwrap();
        assert_eq!(s, State::default());
        if let Kept::Rows(r) = &kept {
            r.store.install_triggers().unwrap();
        }
        let mut s = state();
        kept.save(&s).unwrap();
        let (last, _) = other.pending_changes().unwrap();
        other.forget_changes(last).unwrap();
        // The other connection committed (the log trimmed): the rows are read again, as
        // they were saved.
        assert_eq!(kept.changed::<State>().unwrap(), Some(state()));
        s.alarms.insert("c".into(), serde_json::json!({"x": 3}));
        s.history.pop();
        kept.save(&s).unwrap();
        let Kept::Rows(r) = &kept else { panic!() };
        let (_, changes) = r.store.pending_changes().unwrap();
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [r#"["alarms","alarms/c"]"#, r#"["alarms","history/a"]"#]
        );

        assert!(kept.changed::<State>().unwrap().is_none());
        other
            .conn
            .execute(
                "UPDATE control_docs SET doc = '4' WHERE item = 'counter'",
                [],
            )
            .unwrap();
        let seen: State = kept.changed().unwrap().unwrap();
        assert_eq!(seen.counter, 4);
        other
            .conn
            .execute(
                "UPDATE control_docs SET doc = '{' WHERE item = 'counter'",
                [],
            )
            .unwrap();
        let e = kept.changed::<State>().unwrap_err();
        assert!(e.to_string().contains("\"counter\""), "{e}");
    }
}
