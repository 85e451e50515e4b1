//! The conditions and operations of an etcd transaction ([`super::etcd::Etcd::txn`]), as
//! etcd's JSON gateway takes them (keys and values base64, revisions as strings).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// A condition of a [`super::etcd::Etcd::txn`].
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
    pub fn json(&self) -> Value {
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

/// An operation of a [`super::etcd::Etcd::txn`].
#[derive(Debug, Clone)]
pub enum Op {
    Put(String, Vec<u8>),
    /// A put attached to a lease: the key goes when the lease does.
    PutWithLease(String, Vec<u8>, i64),
    Delete(String),
}

impl Op {
    pub fn json(&self) -> Value {
        match self {
            Op::Put(k, v) => json!({"request_put": {"key": B64.encode(k), "value": B64.encode(v)}}),
            Op::PutWithLease(k, v, lease) => json!({"request_put": {
                "key": B64.encode(k), "value": B64.encode(v), "lease": lease.to_string()
            }}),
            Op::Delete(k) => json!({"request_delete_range": {"key": B64.encode(k)}}),
        }
    }
}

/// The end of the range of keys starting with `prefix` (its last byte incremented).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
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
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/a/"), b"/a0");
        assert_eq!(prefix_end("a/"), b"a0");
    }
}
