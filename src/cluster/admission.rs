//! What a joined box may write, checked at serve's port for boxes before etcd sees it
//! (docs/cluster.md "Boxes over one port"; Kubernetes' NodeRestriction admission does the
//! same for a kubelet). [`super::rights`] keeps a box to its own keys; this checks what
//! it writes there, with the rules the readers apply to what they read (each written once,
//! beside its reader: [`instances::registration`], [`instances::custom_attribute`],
//! [`reports::report`], [`subnets::port_refusal`]), so a refused value is never written
//! rather than written and then left out by every reader. The readers keep their checks:
//! a box with a direct etcd connection (a `cluster add-box` bundle) and data written
//! before pass no port.
//!
//! Each put, alone or in a transaction (either branch), is taken apart (etcd's JSON:
//! base64 keys and values) and judged by its key: a registration (decodes, within 64 KiB,
//! its `id` its key's, its endpoint `tunnel`), a custom attribute (as ECS takes one), a
//! ledger, a liveness key, a claim, a task report (within 256 KiB, decodes, for a task
//! assigned to an instance bound to the box), a task subnet (a /16 or longer in a private
//! range, inside the cluster's task range when serve has it, held for an instance bound
//! to the box); nothing else. A status, an assignment,
//! the leader's word that it bound an instance, another box's prefix and every key of the
//! control plane are refused. Only puts are read here (reads, deletes, leases and
//! watches are [`super::rights`]'); a report or a subnet claim costs one or two reads of
//! etcd.

use super::etcd::{Etcd, EtcdError};
use super::join::Refusal;
use super::{instances, keys, records, reports, subnets, tunnel};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

/// The largest value of a key with no rule of its own: a claim (empty), a liveness key
/// (the host name).
pub const SMALL_MAX: usize = 4 * 1024;
/// The largest ledger (its JSON): a reservation is about 200 bytes.
pub const LEDGER_MAX: usize = 256 * 1024;
/// What a refusal of a report for a task not assigned to the box's instance says: the
/// agent drops such a report (the leader would too) instead of ending its session.
pub const NOT_ASSIGNED: &str = "is not assigned to instance";

/// One put a box asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub key: String,
    pub value: Vec<u8>,
    /// etcd's `ignore_value`: the key keeps its value (only its lease changes).
    pub keeps_value: bool,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// One `request_put` (or a put call's body) taken apart.
fn put_of(v: &Value) -> Result<Put, Refusal> {
    let field = |name: &str| -> Result<Vec<u8>, Refusal> {
        match &v[name] {
            Value::Null => Ok(Vec::new()),
            Value::String(s) => B64.decode(s).map_err(|e| {
                refuse(
                    400,
                    format!("a put's {name}: not base64 (etcd's JSON gateway): {e}"),
                )
            }),
            _ => Err(refuse(400, format!("a put's {name}: not a base64 string"))),
        }
    };
    let key = String::from_utf8(field("key")?)
        .map_err(|_| refuse(400, "a put's key is not UTF-8: no key a box writes"))?;
    Ok(Put {
        key,
        value: field("value")?,
        keeps_value: v["ignore_value"].as_bool().unwrap_or(false),
    })
}

/// The puts of `call`'s `body`: a put, or each `request_put` of a transaction's `success`
/// and `failure`. A body that does not decode is refused (etcd would refuse it too); a
/// nested transaction, which a box's client never sends, is refused.
pub fn puts(call: &str, body: &[u8]) -> Result<Vec<Put>, Refusal> {
    if !matches!(call, "/v3/kv/put" | "/v3/kv/txn") {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(400, format!("{call}: the body is not JSON: {e}")))?;
    if call == "/v3/kv/put" {
        return Ok(vec![put_of(&v)?]);
    }
    let mut out = Vec::new();
    for branch in ["success", "failure"] {
        let ops = match &v[branch] {
            Value::Null => continue,
            Value::Array(ops) => ops,
            _ => return Err(refuse(400, format!("{call}: {branch} is not a list"))),
        };
        for op in ops {
            if !op["request_txn"].is_null() {
                return Err(refuse(
                    403,
                    "a nested transaction: not a call a box makes here",
                ));
            }
            if !op["request_put"].is_null() {
                out.push(put_of(&op["request_put"])?);
            }
        }
    }
    Ok(out)
}

/// What is left to check of a put once its key and value passed: that the instance it
/// names is bound to the box (and, for a report, that the task is assigned to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// Nothing: [`super::rights`] keeps the key to the box's own instances.
    Nothing,
    /// A report of task `task` of cluster `cluster` for instance `instance`.
    Report {
        cluster: String,
        instance: String,
        task: String,
    },
    /// A task subnet held for `instance`.
    Subnet { instance: String },
}

/// Checks put `p` of box `name` against the rules its key's readers apply: what is left
/// to check in etcd ([`Owned`]), or why it is refused (403: not a key the box writes;
/// 400: a value no reader would take).
pub fn check(name: &str, p: &Put) -> Result<Owned, Refusal> {
    check_in(name, p, TASK_RANGE.get().copied())
}

/// The cluster's task range this serve holds boxes' subnet claims to (`serve
/// --boxes-task-range`), set once at start.
static TASK_RANGE: std::sync::OnceLock<netns::Subnet> = std::sync::OnceLock::new();

/// Holds every box's task subnet claim at this serve's port to `range` from now on.
pub fn hold_claims_to(range: netns::Subnet) {
    let _ = TASK_RANGE.set(range);
}

/// [`check`] against task range `range` (`None`: a private /16 or longer anywhere).
fn check_in(name: &str, p: &Put, range: Option<netns::Subnet>) -> Result<Owned, Refusal> {
    let key = p.key.as_str();
    let bad = |why: String| refuse(400, format!("{key}: {why}"));
    let value = if p.keeps_value {
        None
    } else {
        Some(p.value.as_slice())
    };
    if let Some((cluster, kind, rest)) = keys::parse(key) {
        return check_instance_key((cluster, kind, rest), value).map_err(bad_or(key));
    }
    let own_box = keys::box_prefix(name);
    let own_subnets = keys::box_subnets(name);
    if let Some(rest) = key.strip_prefix(&own_box) {
        return check_own_box_key(name, key, rest, value).map_err(bad_or(key));
    }
    if let Some(last) = key.strip_prefix(&own_subnets) {
        let s = subnets::key_subnet(last)
            .ok_or_else(|| bad("names no subnet (NETWORK-PREFIX, /8 to /30)".into()))?;
        if let Some(why) = subnets::port_refusal(&s, range) {
            return Err(bad(format!("a task subnet claim not taken: {why}")));
        }
        let Some(v) = value else {
            return Ok(Owned::Nothing);
        };
        small(v).map_err(&bad)?;
        let h: subnets::Holder = serde_json::from_slice(v).map_err(|e| {
            bad(format!(
                "not a subnet's holder (cluster, instance, address): {e}"
            ))
        })?;
        return Ok(Owned::Subnet {
            instance: h.instance,
        });
    }
    let why = if key.starts_with(&keys::boxes()) || key.starts_with(&keys::subnets()) {
        format!("box {name} writes only under its own prefixes ({own_box}, {own_subnets})")
    } else {
        format!("not a key a box writes (box {name})")
    };
    Err(refuse(403, format!("{key}: {why}")))
}

fn bad_or(key: &str) -> impl Fn((u16, String)) -> Refusal + '_ {
    move |(status, why)| refuse(status, format!("{key}: {why}"))
}

fn small(v: &[u8]) -> Result<(), String> {
    if v.len() > SMALL_MAX {
        return Err(format!("a value of {} bytes: over {SMALL_MAX}", v.len()));
    }
    Ok(())
}

/// A key of an instance (`clusters/<cluster>/<kind>/<rest>`) a box may write once the
/// leader bound the instance to it, its value checked (`None`: the value is kept).
fn check_instance_key(
    (cluster, kind, rest): (&str, &str, &str),
    value: Option<&[u8]>,
) -> Result<Owned, (u16, String)> {
    let bad = |why: String| (400, why);
    match kind {
        "instances" => {
            let Some(v) = value else {
                return Ok(Owned::Nothing);
            };
            let reg = instances::registration(rest, v).map_err(bad)?;
            match reg.endpoint.as_deref() {
                Some(tunnel::REGISTERED) => Ok(Owned::Nothing),
                e => Err(bad(format!(
                    "a joined box registers its endpoint as {:?} (it is reached through \
                     the tunnel it dials), not {e:?}",
                    tunnel::REGISTERED
                ))),
            }
        }
        "attributes" => {
            let Some((_, attr)) = rest.split_once('/') else {
                return Err(bad("names no attribute".into()));
            };
            if let Some(v) = value {
                instances::custom_attribute(attr, v).map_err(bad)?;
            }
            Ok(Owned::Nothing)
        }
        "ledger" => {
            if let Some(v) = value {
                if v.len() > LEDGER_MAX {
                    return Err(bad(format!(
                        "a ledger of {} bytes: over {LEDGER_MAX}",
                        v.len()
                    )));
                }
                records::decode::<records::Ledger>(&keys::ledger(cluster, rest), v)
                    .map_err(|e| bad(e.why))?;
            }
            Ok(Owned::Nothing)
        }
        "alive" => {
            value.map(small).transpose().map_err(bad)?;
            Ok(Owned::Nothing)
        }
        "status" => Err((
            403,
            "an instance's status is serve's (the API's DRAINING and INACTIVE): a box \
             reads its own and writes none"
                .into(),
        )),
        "assignments" => Err((
            403,
            "an assignment is the placer's: a box deletes its own once a task left it, \
             and writes none"
                .into(),
        )),
        _ => Err((
            403,
            format!("a cluster's {kind:?} key: not one a box writes"),
        )),
    }
}

/// A key under box `name`'s own prefix (`rest` after it): its claims and its reports.
fn check_own_box_key(
    name: &str,
    key: &str,
    rest: &str,
    value: Option<&[u8]>,
) -> Result<Owned, (u16, String)> {
    if rest.starts_with("claims/") {
        value.map(small).transpose().map_err(|w| (400, w))?;
        return Ok(Owned::Nothing);
    }
    let Some((_, cluster, task)) = keys::parse_box_report(key) else {
        return Err((
            403,
            format!(
                "not a key box {name} writes under its prefix (its claims and its task \
                 reports; `bound/` is serve's word)"
            ),
        ));
    };
    let Some(v) = value else {
        return Err((400, "a report keeps no value of before".into()));
    };
    let r = reports::report(key, v).map_err(|w| (400, w))?;
    Ok(Owned::Report {
        cluster: cluster.into(),
        instance: r.instance,
        task: task.into(),
    })
}

/// Checks in etcd what [`check`] left: the instance is bound to box `name`, and a reported
/// task is assigned to it.
async fn check_owned(etcd: &Etcd, name: &str, owned: &Owned) -> Result<(), Refusal> {
    let unavailable = |e: EtcdError| {
        refuse(
            503,
            format!(
                "the control plane's store is out of reach: {}",
                crate::errors::error_chain(&e)
            ),
        )
    };
    let instance = match owned {
        Owned::Nothing => return Ok(()),
        Owned::Report { instance, .. } | Owned::Subnet { instance } => instance,
    };
    let bound = etcd
        .get(&keys::binding(instance))
        .await
        .map_err(unavailable)?
        .is_some_and(|b| b.value == name.as_bytes());
    if !bound {
        return Err(refuse(
            403,
            format!("instance {instance:?} is not bound to box {name}"),
        ));
    }
    if let Owned::Report { cluster, task, .. } = owned
        && etcd
            .get(&keys::assignment(cluster, instance, task))
            .await
            .map_err(unavailable)?
            .is_none()
    {
        return Err(refuse(
            403,
            format!("a report of task {task}, which {NOT_ASSIGNED} {instance} (cluster {cluster})"),
        ));
    }
    Ok(())
}

/// Whether box `name` may make call `call` with `body`: every put in it checked
/// ([`puts`], [`check`], then in etcd), or the first refusal.
pub async fn vet(etcd: &Etcd, name: &str, call: &str, body: &[u8]) -> Result<(), Refusal> {
    for p in puts(call, body)? {
        let owned = check(name, &p)?;
        check_owned(etcd, name, &owned).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn put(key: &str, value: &[u8]) -> Put {
        Put {
            key: key.into(),
            value: value.to_vec(),
            keeps_value: false,
        }
    }

    fn registration(id: &str, endpoint: Option<&str>) -> Vec<u8> {
        let mut r = instances::Registration::of_this_box(id, 1);
        r.endpoint = endpoint.map(str::to_string);
        serde_json::to_vec(&r).unwrap()
    }

    fn refused(name: &str, p: &Put) -> (u16, String) {
        let r = check(name, p).unwrap_err();
        (r.status, r.message)
    }

    #[test]
    fn puts_are_read_from_a_put_and_from_both_branches_of_a_transaction() {
        let k = B64.encode("k");
        let body = json!({"key": k, "value": B64.encode("v"), "lease": "7"}).to_string();
        assert_eq!(
            puts("/v3/kv/put", body.as_bytes()).unwrap(),
            [put("k", b"v")]
        );
        let txn = json!({
            "compare": [{"key": k, "target": "CREATE", "create_revision": "0", "result": "EQUAL"}],
            "success": [{"request_put": {"key": k, "value": B64.encode("a")}},
                        {"request_delete_range": {"key": k}}],
            "failure": [{"request_put": {"key": B64.encode("f"), "ignore_value": true}}],
        })
        .to_string();
        let got = puts("/v3/kv/txn", txn.as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], put("k", b"a"));
        assert!(got[1].keeps_value && got[1].key == "f");
        // Reads, deletes and leases are not taken apart.
        assert!(puts("/v3/kv/range", b"not even json").unwrap().is_empty());
        assert!(puts("/v3/lease/keepalive", b"{}").unwrap().is_empty());
        for (call, body) in [
            ("/v3/kv/put", "not json".to_string()),
            ("/v3/kv/put", json!({"key": "%%%"}).to_string()),
            ("/v3/kv/put", json!({"key": 7}).to_string()),
            ("/v3/kv/txn", json!({"success": "x"}).to_string()),
        ] {
            assert_eq!(
                puts(call, body.as_bytes()).unwrap_err().status,
                400,
                "{body}"
            );
        }
        let nested = json!({"success": [{"request_txn": {}}]}).to_string();
        assert_eq!(
            puts("/v3/kv/txn", nested.as_bytes()).unwrap_err().status,
            403
        );
    }

    #[test]
    fn a_registration_is_taken_only_under_its_own_id_within_bounds_and_with_the_tunnel() {
        let key = keys::instance("lab", ID);
        assert_eq!(
            check("edge-1", &put(&key, &registration(ID, Some("tunnel")))),
            Ok(Owned::Nothing)
        );
        let other = "fedcba9876543210fedcba9876543210";
        for (value, says) in [
            (registration(other, Some("tunnel")), "names instance"),
            (registration(ID, Some("https://10.0.0.9:51680")), "not Some"),
            (registration(ID, None), "registers its endpoint as"),
            (
                b"{garbled".to_vec(),
                "not a container instance registration",
            ),
            (vec![b' '; instances::REGISTRATION_MAX + 1], "over 65536"),
        ] {
            let (status, why) = refused("edge-1", &put(&key, &value));
            assert_eq!(status, 400, "{why}");
            assert!(why.contains(says) && why.starts_with(&key), "{why}");
        }
    }

    #[test]
    fn a_box_writes_no_status_no_assignment_and_nothing_of_the_control_plane() {
        for (key, says) in [
            (keys::status("lab", ID), "status is serve's"),
            (keys::assignment("lab", ID, "t1"), "the placer's"),
            (keys::task("lab", "t1"), "not one a box writes"),
            (keys::binding(ID), "not a key a box writes"),
            (keys::leader(), "not a key a box writes"),
            (keys::token(), "not a key a box writes"),
            (keys::join_token("abc"), "not a key a box writes"),
            // What every box's listeners route by: read by all, written by serves only.
            (keys::elb_config(), "not a key a box writes"),
            (keys::elb_health(), "not a key a box writes"),
            (
                keys::box_claim("edge-2", "lab", ID),
                "only under its own prefixes",
            ),
            (
                keys::box_report("edge-2", "lab", "t1"),
                "only under its own prefixes",
            ),
            (keys::box_bound("edge-1", "lab", ID), "serve's word"),
            (
                format!("{}10.94.9.0-24", keys::box_subnets("edge-2")),
                "own prefixes",
            ),
        ] {
            let (status, why) = refused("edge-1", &put(&key, b"ACTIVE"));
            assert_eq!(status, 403, "{key}: {why}");
            assert!(why.contains(says), "{key}: {why}");
        }
    }

    #[test]
    fn attributes_ledgers_claims_and_liveness_are_bounded() {
        let attr = keys::attribute("lab", ID, "stack");
        assert_eq!(check("b", &put(&attr, br#""blue""#)), Ok(Owned::Nothing));
        assert_eq!(check("b", &put(&attr, b"null")), Ok(Owned::Nothing));
        assert_eq!(refused("b", &put(&attr, br#""no;way""#)).0, 400);
        let long = keys::attribute("lab", ID, &"a".repeat(129));
        assert_eq!(refused("b", &put(&long, b"null")).0, 400);
        let ledger = keys::ledger("lab", ID);
        assert_eq!(
            check("b", &put(&ledger, br#"{"tasks":{}}"#)),
            Ok(Owned::Nothing)
        );
        assert_eq!(refused("b", &put(&ledger, b"[1]")).0, 400);
        let claim = keys::box_claim("b", "lab", ID);
        assert_eq!(check("b", &put(&claim, b"")), Ok(Owned::Nothing));
        let (status, why) = refused("b", &put(&claim, &[0; SMALL_MAX + 1]));
        assert!(status == 400 && why.contains("over 4096"), "{why}");
        let alive = keys::alive("lab", ID);
        assert_eq!(check("b", &put(&alive, b"host")), Ok(Owned::Nothing));
        assert_eq!(refused("b", &put(&alive, &[b'h'; SMALL_MAX + 1])).0, 400);
        // A put that keeps the stored value (a new lease) checks no value.
        let mut keep = put(&keys::instance("lab", ID), b"");
        keep.keeps_value = true;
        assert_eq!(check("b", &keep), Ok(Owned::Nothing));
    }

    #[test]
    fn a_report_within_bounds_is_left_to_check_against_its_assignment() {
        let key = keys::box_report("b", "lab", "t1");
        let report = json!({"instance": ID, "task": {"lastStatus": "RUNNING"}}).to_string();
        assert_eq!(
            check("b", &put(&key, report.as_bytes())),
            Ok(Owned::Report {
                cluster: "lab".into(),
                instance: ID.into(),
                task: "t1".into()
            })
        );
        assert_eq!(refused("b", &put(&key, b"{}")).0, 400);
        let huge = vec![b' '; reports::REPORT_MAX + 1];
        let (status, why) = refused("b", &put(&key, &huge));
        assert!(status == 400 && why.contains("over 262144"), "{why}");
    }

    #[test]
    fn a_subnet_claim_is_a_private_16_or_longer_held_for_an_instance() {
        let holder = json!({"cluster": "lab", "instance": ID, "address": "10.0.0.5"}).to_string();
        let at = |s: &str| format!("{}{s}", keys::box_subnets("b"));
        assert_eq!(
            check("b", &put(&at("10.94.3.0-24"), holder.as_bytes())),
            Ok(Owned::Subnet {
                instance: ID.into()
            })
        );
        for (last, says) in [
            ("0.0.0.0-0", "names no subnet"),
            ("10.0.0.0-8", "shorter than a /16"),
            ("8.8.8.0-24", "not in a private range"),
            ("172.32.0.0-16", "not in a private range"),
            ("garbage", "names no subnet"),
        ] {
            let (status, why) = refused("b", &put(&at(last), holder.as_bytes()));
            assert_eq!(status, 400, "{why}");
            assert!(why.contains(says), "{last}: {why}");
        }
        assert_eq!(refused("b", &put(&at("10.94.3.0-24"), b"{}")).0, 400);
    }

    /// With the cluster's task range (`serve --boxes-task-range`), a claim outside it, or
    /// larger than it, is refused; one inside passes.
    #[test]
    fn a_subnet_claim_outside_the_cluster_s_task_range_is_refused() {
        let holder = json!({"cluster": "lab", "instance": ID, "address": "10.0.0.5"}).to_string();
        let at = |s: &str| put(&format!("{}{s}", keys::box_subnets("b")), holder.as_bytes());
        let range: netns::Subnet = "10.94.0.0/16".parse().unwrap();
        assert_eq!(
            check_in("b", &at("10.94.3.0-24"), Some(range)),
            Ok(Owned::Subnet {
                instance: ID.into()
            })
        );
        for last in ["10.95.3.0-24", "192.168.0.0-24", "10.94.0.0-15"] {
            let r = check_in("b", &at(last), Some(range)).unwrap_err();
            assert_eq!(r.status, 400, "{last}: {}", r.message);
            assert!(
                r.message
                    .contains("outside the cluster's task range 10.94.0.0/16")
                    || r.message.contains("shorter than"),
                "{last}: {}",
                r.message
            );
        }
    }
}
