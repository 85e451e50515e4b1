//! Serve's leader folds the boxes' task reports into the task records (docs/cluster.md
//! "Security"): a box writes `boxes/NAME/reports/<cluster>/<task>` (its etcd role's own
//! prefix), never `tasks/<task>`, so a box cannot forge another box's records. A report
//! is applied only while the task is assigned to the instance it names and that instance
//! is bound to the reporting box (`bindings/<id>`; on a plain etcd, without bindings, a
//! box reports under its instance id), in one transaction on what was read: the report,
//! the assignment, the record (and, for a STOPPED report, the ledger). A STOPPED record
//! is final: the leader's verdict on a lost box and a box's real exit codes, whichever
//! came first, is never rewritten. A STOPPED report also releases the task (assignment
//! deleted, reservation out of the ledger) in the same transaction. Every report read is
//! deleted once settled (applied, or refused and said).

use super::etcd::{Compare, Etcd, EtcdError, Kv, Op};
use super::keys;
use super::records::{Ledger, Record, Report, decode, json_bytes, mark_stopped};

/// How many times one report is read again when what it compares changed meanwhile.
const ATTEMPTS: usize = 8;

/// The largest report the leader folds (its JSON): a task as DescribeTasks shows it, ten
/// containers with their overrides, stays far below it. A larger one is dropped and said.
pub const REPORT_MAX: usize = 256 * 1024;

/// Why a report of `len` bytes is not folded; `None` when it is within bounds.
fn oversized(len: usize) -> Option<String> {
    (len > REPORT_MAX).then(|| format!("a report of {len} bytes: over {REPORT_MAX}"))
}

/// Report `key` as stored, or why the leader does not fold it (and serve's port for
/// boxes refuses it, `super::admission`): over [`REPORT_MAX`], or not a report.
pub fn report(key: &str, raw: &[u8]) -> Result<Report, String> {
    if let Some(why) = oversized(raw.len()) {
        return Err(why);
    }
    decode(key, raw).map_err(|e| e.to_string())
}

/// Whether instance `instance`'s reports come from box `name`: the box it is bound to, or,
/// for an instance without a binding (a plain etcd: no etcd users), the box that reports
/// under the instance's own id.
async fn reports_for(etcd: &Etcd, name: &str, instance: &str) -> Result<bool, EtcdError> {
    Ok(match etcd.get(&keys::binding(instance)).await? {
        Some(b) => b.value == name.as_bytes(),
        None => name == instance,
    })
}

/// Folds report `kv` (another key under the boxes' prefix is ignored).
pub async fn fold(etcd: &Etcd, kv: &Kv) -> Result<(), EtcdError> {
    let Some((name, cluster, task)) = keys::parse_box_report(&kv.key) else {
        return Ok(());
    };
    let mut report_rev = kv.mod_revision;
    let mut raw = kv.value.clone();
    for _ in 0..ATTEMPTS {
        if once(etcd, &kv.key, (name, cluster, task), &raw, report_rev).await? {
            return Ok(());
        }
        // Something compared changed: the report itself, perhaps (a newer one).
        match etcd.get(&kv.key).await? {
            Some(now) => {
                report_rev = now.mod_revision;
                raw = now.value;
            }
            None => return Ok(()),
        }
    }
    tracing::warn!(report = %kv.key, "a box's report kept changing under the leader: folded at the next pass");
    Ok(())
}

/// Deletes report `key` as read at `rev`; `false` if it changed meanwhile.
async fn drop_report(etcd: &Etcd, key: &str, rev: i64) -> Result<bool, EtcdError> {
    etcd.txn(
        &[Compare::ModRevision(key.to_string(), rev)],
        &[Op::Delete(key.to_string())],
    )
    .await
}

/// One attempt at folding a report read at `report_rev`; `false` when a compare failed.
async fn once(
    etcd: &Etcd,
    key: &str,
    (name, cluster, task): (&str, &str, &str),
    raw: &[u8],
    report_rev: i64,
) -> Result<bool, EtcdError> {
    let settled = |why: &str| {
        tracing::warn!(report = %key, r#box = %name, why, "a box's task report not applied");
    };
    let drop_report = || drop_report(etcd, key, report_rev);
    let report = match report(key, raw) {
        Ok(r) => r,
        Err(why) => {
            settled(&why);
            return drop_report().await;
        }
    };
    let instance = report.instance.as_str();
    if !reports_for(etcd, name, instance).await? {
        settled(&format!("instance {instance} is not bound to this box"));
        return drop_report().await;
    }
    let akey = keys::assignment(cluster, instance, task);
    let Some(assignment) = etcd.get(&akey).await? else {
        // Taken off the instance (stopped in the cluster): nothing of it is the box's now.
        return drop_report().await;
    };
    let rkey = keys::task(cluster, task);
    let Some(record) = etcd.get(&rkey).await? else {
        return drop_report().await;
    };
    // A record that does not decode is replaced by the report.
    let current = decode::<Record>(&rkey, &record.value).ok();
    if let Some(r) = &current
        && r.instance != instance
    {
        settled(&format!("the task's record is on instance {}", r.instance));
        return drop_report().await;
    }
    let final_already = current
        .as_ref()
        .is_some_and(|r| r.task["lastStatus"] == "STOPPED");
    let mut compares = vec![
        Compare::ModRevision(key.to_string(), report_rev),
        Compare::ModRevision(akey.clone(), assignment.mod_revision),
        Compare::ModRevision(rkey.clone(), record.mod_revision),
    ];
    let mut ops = vec![Op::Delete(key.to_string())];
    if !final_already {
        let task_json = match (report.task.clone(), &report.never_started, &current) {
            (Some(t), _, _) => t,
            (None, Some(n), Some(r)) => {
                let mut t = r.task.clone();
                mark_stopped(&mut t, &n.stop_code, &n.reason);
                t
            }
            (None, _, _) => {
                settled("a report with neither the task nor why it never started");
                return drop_report().await;
            }
        };
        let r = Record {
            instance: instance.to_string(),
            task: task_json,
        };
        ops.push(Op::Put(rkey.clone(), json_bytes(&r)));
    }
    if report.stopped() {
        // Released with its STOPPED record: assignment and reservation go together.
        ops.push(Op::Delete(akey));
        let lkey = keys::ledger(cluster, instance);
        if let Some(l) = etcd.get(&lkey).await? {
            match decode::<Ledger>(&lkey, &l.value) {
                Ok(mut ledger) => {
                    if ledger.tasks.remove(task).is_some() {
                        compares.push(Compare::ModRevision(lkey.clone(), l.mod_revision));
                        ops.push(Op::Put(lkey, json_bytes(&ledger)));
                    }
                }
                Err(e) => tracing::error!(task = %task, error = %e,
                    "the ledger does not decode: the stopped task's reservation stays"),
            }
        }
    }
    etcd.txn(&compares, &ops).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_over_the_bound_is_not_folded() {
        assert_eq!(oversized(2_000), None);
        assert_eq!(oversized(REPORT_MAX), None);
        assert!(oversized(REPORT_MAX + 1).is_some_and(|w| w.contains("over")));
    }
}
