//! What a joined box may read and write through serve's port for boxes, decided by serve
//! per call (docs/cluster.md "Boxes over one port"; Kubernetes' Node authorizer does the
//! same for a kubelet). A joined box has no etcd user: serve passes its calls to etcd as
//! itself, so every key a call reads or touches is checked here first, against what the
//! box is ([`BoxView`]: its name, the instances bound to it, the leases granted to it):
//!
//! - reads (a range, a watch, a transaction's compares and its ranges): its own prefix,
//!   every box's task subnets (it routes them), the serves' registries, the tasks' DNS
//!   names, the load balancers' configuration and health, the key the store's revision is
//!   read with, and each bound instance's registration, liveness key, status, attributes,
//!   ledger and assignments;
//! - writes (a put, a delete, in a transaction or alone): its own prefix, its own task
//!   subnets, and each bound instance's keys but its status ([`keys::instance_keys`]);
//!   [`super::admission`] then checks what each put writes;
//! - leases: a put attaches only a lease granted to the box through the port, and a box
//!   keeps alive or revokes only such a lease.
//!
//! A body is taken apart with only the fields a box's client sends (etcd's JSON gateway
//! also reads camelCase names, and a duplicated field could be read differently there):
//! anything else is refused, and what is passed on is what was checked, written again.

use super::etcd::Kv;
use super::join::Refusal;
use super::keys::{self, Grant};
use super::txn::prefix_end;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// What a box is, for the check of its calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxView {
    pub name: String,
    /// The instances (cluster, id) serve's leader bound to the box (`boxes/NAME/bound/`).
    pub bound: BTreeSet<(String, String)>,
    /// The leases of the call that were granted to the box through the port.
    pub leases: BTreeSet<i64>,
}

impl BoxView {
    /// Box `name` bound to the instances of the `bound/` keys `kvs` (others ignored).
    pub fn of(name: &str, kvs: &[Kv]) -> BoxView {
        BoxView {
            name: name.into(),
            bound: kvs
                .iter()
                .filter_map(|kv| keys::parse_box_bound(name, &kv.key))
                .map(|(c, id)| (c.to_string(), id.to_string()))
                .collect(),
            leases: BTreeSet::new(),
        }
    }
}

/// The keys a call names: `key` alone (`end` empty), `key` up to `end` (excluded), or
/// every key from `key` on (`end` = `\0`, etcd's "all keys >= key").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub key: Vec<u8>,
    pub end: Vec<u8>,
}

impl Span {
    fn prefix(p: &str) -> Span {
        Span {
            key: p.as_bytes().to_vec(),
            end: prefix_end(p),
        }
    }

    fn exact(k: &str) -> Span {
        Span {
            key: k.as_bytes().to_vec(),
            end: Vec::new(),
        }
    }

    /// Whether every key of `self` is in `within` (a prefix or one key, never unbounded).
    fn inside(&self, within: &Span) -> bool {
        let last = |s: &Span| -> Vec<u8> {
            if s.end.is_empty() {
                let mut k = s.key.clone();
                k.push(0);
                k
            } else {
                s.end.clone()
            }
        };
        if self.end == [0] {
            return false;
        }
        within.key <= self.key && last(self) <= last(within) && self.key < last(within)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = String::from_utf8_lossy(&self.key);
        match self.end.as_slice() {
            [] => write!(f, "{k:?}"),
            [0] => write!(f, "every key from {k:?} on"),
            e => write!(f, "{k:?} up to {:?}", String::from_utf8_lossy(e)),
        }
    }
}

/// One thing a call does with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Range(Span),
    Watch(Span),
    /// A transaction's compare: it tells the caller what the keys hold.
    Compare(Span),
    /// A put, attached to `lease` (0: none).
    Put {
        key: Vec<u8>,
        lease: i64,
    },
    Delete(Span),
    Grant,
    /// A keep-alive or a revocation of a lease.
    Lease(i64),
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// What box `v` may read: the spans, and what they are (for a refusal).
fn reads(v: &BoxView) -> Vec<Span> {
    let mut out = vec![
        Span::prefix(&keys::box_prefix(&v.name)),
        Span::prefix(&keys::subnets()),
        Span::prefix(&keys::registries()),
        Span::prefix(&keys::dns()),
        Span::prefix(&keys::elb()),
        // The key the store's revision is read with (super::etcd's ROOT_PROBE).
        Span::exact("/minifargate"),
    ];
    out.extend(instance_spans(v, |_| true));
    out
}

/// What box `v` may write (the values then checked by [`super::admission`]).
fn writes(v: &BoxView) -> Vec<Span> {
    let mut out = vec![
        Span::prefix(&keys::box_prefix(&v.name)),
        Span::prefix(&keys::box_subnets(&v.name)),
    ];
    out.extend(instance_spans(v, |g| g == Grant::Write));
    out
}

fn instance_spans(v: &BoxView, take: impl Fn(Grant) -> bool) -> Vec<Span> {
    v.bound
        .iter()
        .flat_map(|(c, id)| keys::instance_keys(c, id))
        .filter(|(_, _, g)| take(*g))
        .map(|(k, exact, _)| {
            if exact {
                Span::exact(&k)
            } else {
                Span::prefix(&k)
            }
        })
        .collect()
}

/// Whether box `v` may do `op`, or why not (403, naming the keys and the rule).
pub fn may(v: &BoxView, op: &Op) -> Result<(), Refusal> {
    let name = &v.name;
    let read = |s: &Span, what: &str| {
        if reads(v).iter().any(|w| s.inside(w)) {
            return Ok(());
        }
        Err(refuse(
            403,
            format!(
                "{what} {s}: box {name} reads only its own prefix, the instances bound to it, \
                 the task subnets, the serves' registries, the tasks' DNS names and the load \
                 balancers' configuration"
            ),
        ))
    };
    let write = |s: &Span, what: &str| {
        if writes(v).iter().any(|w| s.inside(w)) {
            return Ok(());
        }
        Err(refuse(
            403,
            format!(
                "{what} {s}: box {name} writes only under its own prefixes and the keys of \
                 the instances bound to it (their status is serve's)"
            ),
        ))
    };
    let lease = |id: i64, what: &str| {
        if v.leases.contains(&id) {
            return Ok(());
        }
        Err(refuse(
            403,
            format!(
                "{what} lease {id}: not a lease granted to box {name} through serve's port \
                 for boxes"
            ),
        ))
    };
    match op {
        Op::Range(s) => read(s, "a read of"),
        Op::Watch(s) => read(s, "a watch of"),
        Op::Compare(s) => read(s, "a transaction's compare of"),
        Op::Delete(s) => write(s, "a delete of"),
        Op::Put { key, lease: l } => {
            write(&Span::exact_bytes(key), "a put of")?;
            match *l {
                0 => Ok(()),
                id => lease(id, "a put attached to"),
            }
        }
        Op::Grant => Ok(()),
        Op::Lease(id) => lease(*id, "a keep-alive or revocation of"),
    }
}

impl Span {
    fn exact_bytes(k: &[u8]) -> Span {
        Span {
            key: k.to_vec(),
            end: Vec::new(),
        }
    }
}

/// The fields a box's client sends in each message; any other is refused.
const RANGE: &[&str] = &[
    "key",
    "range_end",
    "limit",
    "revision",
    "keys_only",
    "count_only",
    "serializable",
];
const PUT: &[&str] = &[
    "key",
    "value",
    "lease",
    "prev_kv",
    "ignore_value",
    "ignore_lease",
];
const DELETE: &[&str] = &["key", "range_end", "prev_kv"];
const COMPARE: &[&str] = &[
    "key",
    "range_end",
    "target",
    "result",
    "version",
    "create_revision",
    "mod_revision",
    "value",
    "lease",
];
const TXN: &[&str] = &["compare", "success", "failure"];
const WATCH: &[&str] = &[
    "key",
    "range_end",
    "start_revision",
    "progress_notify",
    "prev_kv",
];
const GRANT: &[&str] = &["TTL", "ID"];
const LEASE: &[&str] = &["ID"];

fn object<'a>(
    v: &'a Value,
    allowed: &[&str],
    what: &str,
) -> Result<&'a Map<String, Value>, Refusal> {
    let m = v
        .as_object()
        .ok_or_else(|| refuse(400, format!("{what}: not a JSON object")))?;
    if let Some(f) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(refuse(
            400,
            format!(
                "{what}: field {f:?} is not one a box's client sends here (these are: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(m)
}

fn bytes(m: &Map<String, Value>, field: &str, what: &str) -> Result<Vec<u8>, Refusal> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => B64
            .decode(s)
            .map_err(|e| refuse(400, format!("{what}'s {field}: not base64: {e}"))),
        Some(_) => Err(refuse(
            400,
            format!("{what}'s {field}: not a base64 string"),
        )),
    }
}

/// A 64-bit number of etcd's JSON (a string of digits or a JSON integer; absent: 0).
fn number(m: &Map<String, Value>, field: &str, what: &str) -> Result<i64, Refusal> {
    let bad = || refuse(400, format!("{what}'s {field}: not a 64-bit integer"));
    match m.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| bad()),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn span(m: &Map<String, Value>, what: &str) -> Result<Span, Refusal> {
    Ok(Span {
        key: bytes(m, "key", what)?,
        end: bytes(m, "range_end", what)?,
    })
}

/// The lease fields are written again as strings of digits, the form etcd's gateway
/// reads one way only.
fn lease_field(m: &mut Map<String, Value>, field: &str, what: &str) -> Result<i64, Refusal> {
    let id = number(m, field, what)?;
    if m.contains_key(field) {
        m.insert(field.into(), Value::String(id.to_string()));
    }
    Ok(id)
}

/// The ops of a transaction's branch `ops` (`success` or `failure`).
fn branch(ops: &mut Value, which: &str, out: &mut Vec<Op>) -> Result<(), Refusal> {
    let list = match ops {
        Value::Null => return Ok(()),
        Value::Array(l) => l,
        _ => return Err(refuse(400, format!("a transaction's {which}: not a list"))),
    };
    for op in list {
        let what = format!("a transaction's {which} op");
        let m = op
            .as_object_mut()
            .filter(|m| m.len() == 1)
            .ok_or_else(|| refuse(400, format!("{what}: not one request")))?;
        let (kind, body) = m.iter_mut().next().expect("one entry");
        match kind.as_str() {
            "request_range" => {
                let r = object(body, RANGE, &what)?;
                out.push(Op::Range(span(r, &what)?));
            }
            "request_delete_range" => {
                let r = object(body, DELETE, &what)?;
                out.push(Op::Delete(span(r, &what)?));
            }
            "request_put" => {
                object(body, PUT, &what)?;
                out.push(put(body.as_object_mut().expect("an object"), &what)?);
            }
            other => {
                return Err(refuse(
                    403,
                    format!("{what}: {other:?} is not a request a box's client sends"),
                ));
            }
        }
    }
    Ok(())
}

fn put(m: &mut Map<String, Value>, what: &str) -> Result<Op, Refusal> {
    Ok(Op::Put {
        key: bytes(m, "key", what)?,
        lease: lease_field(m, "lease", what)?,
    })
}

/// The one message of `body` (a streaming call's body could carry several: a box sends
/// one a call).
fn message(call: &str, body: &[u8]) -> Result<Value, Refusal> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let first = values
        .next()
        .ok_or_else(|| refuse(400, format!("{call}: an empty body")))?
        .map_err(|e| refuse(400, format!("{call}: the body is not JSON: {e}")))?;
    if values.next().is_some() {
        return Err(refuse(
            400,
            format!("{call}: more than one request in one call (a box sends one)"),
        ));
    }
    Ok(first)
}

/// The ops of call `call` with `body`, and the body to pass on: what was checked,
/// written again (one message, only the known fields, leases as strings).
pub fn parse(call: &str, body: &[u8]) -> Result<(Vec<Op>, Vec<u8>), Refusal> {
    let mut v = message(call, body)?;
    let mut ops = Vec::new();
    match call {
        "/v3/kv/range" => ops.push(Op::Range(span(object(&v, RANGE, "a read")?, "a read")?)),
        "/v3/kv/deleterange" => ops.push(Op::Delete(span(
            object(&v, DELETE, "a delete")?,
            "a delete",
        )?)),
        "/v3/kv/put" => {
            object(&v, PUT, "a put")?;
            ops.push(put(v.as_object_mut().expect("an object"), "a put")?);
        }
        "/v3/kv/txn" => {
            object(&v, TXN, "a transaction")?;
            let compares = match &mut v["compare"] {
                Value::Null => Vec::new(),
                Value::Array(l) => l.clone(),
                _ => return Err(refuse(400, "a transaction's compare: not a list")),
            };
            for c in &compares {
                ops.push(Op::Compare(span(
                    object(c, COMPARE, "a transaction's compare")?,
                    "a transaction's compare",
                )?));
            }
            for which in ["success", "failure"] {
                if let Some(b) = v.get_mut(which) {
                    branch(b, which, &mut ops)?;
                }
            }
        }
        "/v3/watch" => {
            let top = object(&v, &["create_request"], "a watch")?;
            let c = top
                .get("create_request")
                .ok_or_else(|| refuse(400, "a watch without its create_request"))?;
            ops.push(Op::Watch(span(object(c, WATCH, "a watch")?, "a watch")?));
        }
        "/v3/lease/grant" => {
            let m = object(&v, GRANT, "a lease grant")?;
            if number(m, "ID", "a lease grant")? != 0 {
                return Err(refuse(
                    403,
                    "a lease grant that names its ID: etcd chooses a box's lease's ID",
                ));
            }
            number(m, "TTL", "a lease grant")?;
            ops.push(Op::Grant);
        }
        "/v3/lease/keepalive" | "/v3/lease/revoke" => {
            object(&v, LEASE, "a lease call")?;
            let m = v.as_object_mut().expect("an object");
            ops.push(Op::Lease(lease_field(m, "ID", "a lease call")?));
        }
        other => return Err(refuse(403, format!("{other}: not a call a box makes here"))),
    }
    let again = serde_json::to_vec(&v).expect("JSON encodes");
    Ok((ops, again))
}

/// Whether every key of `keys` (a lease's, none granted through the port: an older
/// version's) is one box `v` writes, so the lease is the box's.
pub fn holds_only_its_own(v: &BoxView, keys: &[String]) -> bool {
    let w = writes(v);
    !keys.is_empty()
        && keys
            .iter()
            .all(|k| w.iter().any(|s| Span::exact(k).inside(s)))
}

/// The leases `ops` name (puts' and lease calls'), each once.
pub fn leases(ops: &[Op]) -> BTreeSet<i64> {
    ops.iter()
        .filter_map(|o| match o {
            Op::Put { lease, .. } if *lease != 0 => Some(*lease),
            Op::Lease(id) => Some(*id),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn edge() -> BoxView {
        BoxView {
            name: "edge-1".into(),
            bound: [("lab".to_string(), ID.to_string())].into(),
            leases: [7].into(),
        }
    }

    fn exact(k: &str) -> Span {
        Span::exact(k)
    }

    fn prefix(k: &str) -> Span {
        Span::prefix(k)
    }

    fn refused(op: Op) -> String {
        let r = may(&edge(), &op).expect_err(&format!("{op:?} passed"));
        assert_eq!(r.status, 403, "{}", r.message);
        r.message
    }

    #[test]
    fn a_box_reads_its_own_its_instances_and_what_its_tasks_need() {
        for s in [
            prefix(&keys::box_prefix("edge-1")),
            exact(&keys::box_claim("edge-1", "lab", ID)),
            prefix(&keys::box_bound_all("edge-1")),
            prefix(&keys::subnets()),
            prefix(&keys::box_subnets("edge-2")),
            prefix(&keys::registries()),
            prefix(&keys::dns()),
            exact(&keys::elb_config()),
            prefix(&keys::elb()),
            exact("/minifargate"),
            exact(&keys::instance("lab", ID)),
            exact(&keys::alive("lab", ID)),
            exact(&keys::status("lab", ID)),
            prefix(&keys::status("lab", ID)),
            exact(&keys::ledger("lab", ID)),
            prefix(&keys::assignments("lab", ID)),
            exact(&keys::assignment("lab", ID, "t1")),
            prefix(&keys::attributes("lab", ID)),
        ] {
            for op in [
                Op::Range(s.clone()),
                Op::Watch(s.clone()),
                Op::Compare(s.clone()),
            ] {
                assert_eq!(may(&edge(), &op), Ok(()), "{op:?}");
            }
        }
    }

    #[test]
    fn a_box_reads_nothing_of_another_box_nor_of_the_control_plane() {
        for (s, says) in [
            // Another box's prefix, instance and keys.
            (prefix(&keys::box_prefix("edge-2")), "reads only"),
            (prefix(&keys::boxes()), "reads only"),
            (exact(&keys::instance("lab", OTHER)), "reads only"),
            (prefix(&keys::assignments("lab", OTHER)), "reads only"),
            (exact(&keys::instance("other", ID)), "reads only"),
            // The cluster's secrets: join tokens, the agents' token, the rows.
            (prefix(&keys::join_tokens()), "reads only"),
            (exact(&keys::join_token("abc")), "reads only"),
            (exact(&keys::token()), "reads only"),
            (exact(&keys::box_lease(7)), "reads only"),
            (prefix(&keys::db_rows()), "reads only"),
            (prefix(&keys::tasks("lab")), "reads only"),
            (prefix(&keys::instances("lab")), "reads only"),
            // The whole keyspace, in etcd's two spellings.
            (
                Span {
                    key: vec![0],
                    end: vec![0],
                },
                "every key from",
            ),
            (
                Span {
                    key: b"/minifargate/v1/boxes/edge-1/".to_vec(),
                    end: vec![0],
                },
                "every key from",
            ),
            (prefix("/"), "reads only"),
            (prefix("/minifargate"), "reads only"),
            // A range that starts inside the box's prefix and runs past it.
            (
                Span {
                    key: keys::box_prefix("edge-1").into_bytes(),
                    end: b"/minifargate/v1/zzz".to_vec(),
                },
                "reads only",
            ),
        ] {
            for op in [
                Op::Range(s.clone()),
                Op::Watch(s.clone()),
                Op::Compare(s.clone()),
            ] {
                let why = refused(op.clone());
                assert!(
                    why.contains(says) && why.contains("edge-1"),
                    "{op:?}: {why}"
                );
            }
        }
        let why = refused(Op::Compare(exact(&keys::box_claim("edge-2", "lab", ID))));
        assert!(why.starts_with("a transaction's compare of"), "{why}");
    }

    #[test]
    fn a_box_writes_its_own_prefixes_and_its_instances_keys_but_their_status() {
        for k in [
            keys::box_claim("edge-1", "lab", ID),
            keys::box_report("edge-1", "lab", "t1"),
            format!("{}10.94.3.0-24", keys::box_subnets("edge-1")),
            keys::instance("lab", ID),
            keys::alive("lab", ID),
            keys::ledger("lab", ID),
            keys::assignment("lab", ID, "t1"),
            keys::attribute("lab", ID, "stack"),
        ] {
            let put = Op::Put {
                key: k.clone().into_bytes(),
                lease: 0,
            };
            assert_eq!(may(&edge(), &put), Ok(()), "{k}");
            assert_eq!(may(&edge(), &Op::Delete(exact(&k))), Ok(()), "{k}");
        }
        for k in [
            keys::status("lab", ID),
            keys::instance("lab", OTHER),
            keys::instance("other", ID),
            keys::box_claim("edge-2", "lab", ID),
            format!("{}10.94.3.0-24", keys::box_subnets("edge-2")),
            keys::binding(ID),
            keys::join_token("abc"),
            keys::task("lab", "t1"),
        ] {
            let why = refused(Op::Put {
                key: k.clone().into_bytes(),
                lease: 0,
            });
            assert!(why.contains("writes only"), "{k}: {why}");
            assert!(
                refused(Op::Delete(exact(&k))).contains("writes only"),
                "{k}"
            );
        }
        // A delete of a range that reaches past its own prefix, or of everything.
        assert!(refused(Op::Delete(prefix(&keys::boxes()))).contains("writes only"));
        assert!(
            refused(Op::Delete(Span {
                key: vec![0],
                end: vec![0]
            }))
            .contains("every key")
        );
    }

    #[test]
    fn a_box_uses_only_the_leases_granted_to_it() {
        let k = keys::alive("lab", ID).into_bytes();
        assert_eq!(
            may(
                &edge(),
                &Op::Put {
                    key: k.clone(),
                    lease: 7
                }
            ),
            Ok(())
        );
        let why = refused(Op::Put { key: k, lease: 8 });
        assert!(
            why.contains("put attached to lease 8: not a lease granted to box edge-1"),
            "{why}"
        );
        assert_eq!(may(&edge(), &Op::Lease(7)), Ok(()));
        assert!(refused(Op::Lease(8)).contains("keep-alive or revocation of lease 8"));
        assert_eq!(may(&edge(), &Op::Grant), Ok(()));
    }

    /// A lease granted before the port recorded owners (an older version's) is the box's
    /// when every key on it is one the box writes.
    #[test]
    fn a_lease_of_before_is_the_box_s_when_it_holds_only_the_box_s_keys() {
        let own = keys::alive("lab", ID);
        assert!(holds_only_its_own(&edge(), std::slice::from_ref(&own)));
        assert!(!holds_only_its_own(&edge(), &[]));
        assert!(!holds_only_its_own(
            &edge(),
            &[own, keys::alive("lab", OTHER)]
        ));
        assert!(!holds_only_its_own(&edge(), &[keys::leader()]));
    }

    #[test]
    fn a_bound_instance_is_read_from_the_leaders_bound_keys() {
        let kv = |key: String| Kv {
            key,
            value: Vec::new(),
            mod_revision: 1,
            create_revision: 1,
            lease: 0,
        };
        let v = BoxView::of(
            "edge-1",
            &[
                kv(keys::box_bound("edge-1", "lab", ID)),
                kv(keys::box_claim("edge-1", "lab", OTHER)),
                kv(keys::box_bound("edge-2", "lab", OTHER)),
            ],
        );
        assert_eq!(v.bound, [("lab".to_string(), ID.to_string())].into());
    }

    fn b64(s: &str) -> String {
        B64.encode(s)
    }

    #[test]
    fn a_call_is_taken_apart_into_everything_it_reads_and_touches() {
        let k = b64("k");
        let txn = json!({
            "compare": [{"key": k, "range_end": b64("l"), "target": "MOD", "mod_revision": "3", "result": "LESS"}],
            "success": [{"request_put": {"key": k, "value": b64("v"), "lease": 9}},
                        {"request_range": {"key": b64("r")}}],
            "failure": [{"request_delete_range": {"key": b64("d"), "range_end": "AA=="}}],
        });
        let (ops, again) = parse("/v3/kv/txn", txn.to_string().as_bytes()).unwrap();
        let span = |k: &str, e: &[u8]| Span {
            key: k.as_bytes().to_vec(),
            end: e.to_vec(),
        };
        assert_eq!(
            ops,
            [
                Op::Compare(span("k", b"l")),
                Op::Put {
                    key: b"k".to_vec(),
                    lease: 9
                },
                Op::Range(span("r", b"")),
                Op::Delete(span("d", &[0])),
            ]
        );
        // Passed on as checked: the lease as a string.
        let again: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(again["success"][0]["request_put"]["lease"], "9");
        assert_eq!(leases(&ops), [9].into());
        let watch = json!({"create_request": {"key": k, "range_end": b64("l"), "start_revision": "5", "progress_notify": true}});
        assert_eq!(
            parse("/v3/watch", watch.to_string().as_bytes()).unwrap().0,
            [Op::Watch(span("k", b"l"))]
        );
        let (ops, _) = parse("/v3/lease/keepalive", br#"{"ID":"42"}"#).unwrap();
        assert_eq!(ops, [Op::Lease(42)]);
        assert_eq!(
            parse("/v3/lease/grant", br#"{"TTL":"10"}"#).unwrap().0,
            [Op::Grant]
        );
    }

    #[test]
    fn a_body_with_what_a_box_s_client_never_sends_is_refused() {
        let k = b64("k");
        for (call, body, says) in [
            // etcd's gateway reads camelCase too: `rangeEnd` would widen the range unseen.
            (
                "/v3/kv/range",
                json!({"key": k, "rangeEnd": "AA=="}).to_string(),
                "field \"rangeEnd\"",
            ),
            (
                "/v3/kv/range",
                json!({"key": k, "sort_order": 1}).to_string(),
                "sort_order",
            ),
            (
                "/v3/kv/range",
                json!({"key": "%%%"}).to_string(),
                "not base64",
            ),
            ("/v3/kv/range", "not json".to_string(), "not JSON"),
            (
                "/v3/kv/range",
                format!("{} {}", json!({"key": k}), json!({"key": k})),
                "more than one request",
            ),
            (
                "/v3/watch",
                format!(
                    "{} {}",
                    json!({"create_request": {"key": k}}),
                    json!({"create_request": {"key": "AA==", "range_end": "AA=="}})
                ),
                "more than one request",
            ),
            (
                "/v3/watch",
                json!({"cancel_request": {"watch_id": 1}}).to_string(),
                "cancel_request",
            ),
            (
                "/v3/lease/keepalive",
                format!("{} {}", json!({"ID": "7"}), json!({"ID": "8"})),
                "more than one request",
            ),
            (
                "/v3/lease/grant",
                json!({"TTL": "10", "ID": "8"}).to_string(),
                "names its ID",
            ),
            (
                "/v3/lease/keepalive",
                json!({"ID": "x"}).to_string(),
                "not a 64-bit integer",
            ),
            (
                "/v3/kv/txn",
                json!({"success": [{"request_txn": {}}]}).to_string(),
                "request_txn",
            ),
            (
                "/v3/kv/txn",
                json!({"success": [{"request_put": {"key": k}, "request_range": {"key": k}}]})
                    .to_string(),
                "not one request",
            ),
            (
                "/v3/kv/txn",
                json!({"compare": [{"key": k, "rangeEnd": "AA=="}]}).to_string(),
                "rangeEnd",
            ),
        ] {
            let r = parse(call, body.as_bytes()).expect_err(&body);
            assert!(r.message.contains(says), "{body}: {}", r.message);
        }
        // A duplicated field is passed on once: the value that was checked.
        let (ops, again) = parse(
            "/v3/kv/range",
            format!(r#"{{"key":"{}","key":"{}"}}"#, b64("a"), b64("b")).as_bytes(),
        )
        .unwrap();
        assert_eq!(ops, [Op::Range(Span::exact("b"))]);
        assert_eq!(
            String::from_utf8(again).unwrap(),
            json!({"key": b64("b")}).to_string()
        );
    }
}
