//! The `elb_resources` rows: ELBv2's resources as JSON documents by ARN (the ELB core,
//! `crate::elb`, encodes and decodes them); and `elb_target_health_history`, each target's
//! changes of health for the console (`crate::elb::history`), bounded as it is written.

use super::{Decoder, Store, StoreError, TargetHealthReason, TargetHealthState, q};
use rusqlite::params;

/// One change of a target's health: from `at_ms` (epoch ms) on, target `target_id`:`port`
/// of group `target_group` was in `state` for `reason`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetHealthPoint {
    pub target_group: String,
    pub target_id: String,
    pub port: u16,
    pub at_ms: i64,
    pub state: TargetHealthState,
    pub reason: Option<TargetHealthReason>,
}

const HISTORY: &str = "elb_target_health_history";

impl Store {
    /// Begins a write of the ELB resources (`BEGIN IMMEDIATE`, waiting while another
    /// process writes): what the writer reads from here on is what it changes, and another
    /// process's write lands before or after, never in between (the CLI's elbv2 verbs and
    /// serve write the same rows). Ends with [`Store::end_elb_write`].
    pub fn begin_elb_write(&self) -> Result<(), StoreError> {
        super::retry_busy(|| self.conn.execute_batch("BEGIN IMMEDIATE"))
            .map_err(q("begin a write of the ELB resources"))
    }

    /// Commits (`commit`) or rolls back the write [`Store::begin_elb_write`] began.
    pub fn end_elb_write(&self, commit: bool) -> Result<(), StoreError> {
        if commit {
            match self.conn.execute_batch("COMMIT") {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(q("commit a write of the ELB resources")(e));
                }
            }
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(q("roll back a write of the ELB resources"))
    }

    /// Every stored ELB resource: (kind, ARN, JSON document), by kind then ARN.
    pub fn elb_resources(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT kind, arn, doc FROM elb_resources ORDER BY kind, arn")
            .map_err(q("read the ELB resources"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(q("read the ELB resources"))?;
        rows.collect::<Result<_, _>>()
            .map_err(q("read the ELB resources"))
    }

    /// Writes (inserts or replaces) one resource.
    pub fn put_elb_resource(&self, kind: &str, arn: &str, doc: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO elb_resources (arn, kind, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (arn) DO UPDATE SET doc = excluded.doc",
                params![arn, kind, doc],
            )
            .map(|_| ())
            .map_err(q("write an ELB resource"))
    }

    pub fn delete_elb_resource(&self, arn: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM elb_resources WHERE arn = ?1", params![arn])
            .map(|_| ())
            .map_err(q("delete an ELB resource"))
    }

    /// Appends `points` (in the order they happened) to the targets' health history and,
    /// in the same transaction, keeps the last `per_target` of each target and, of the
    /// targets whose last point is [`TargetHealthState::Deregistered`], the `gone_kept`
    /// that went last: the table is as bounded as the history in memory.
    pub fn append_target_health(
        &self,
        points: &[TargetHealthPoint],
        per_target: usize,
        gone_kept: usize,
    ) -> Result<(), StoreError> {
        const OP: &str = "write the targets' health history";
        let tx = super::begin_immediate(&self.conn).map_err(q(OP))?;
        let mut touched = std::collections::BTreeSet::new();
        let mut any_gone = false;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO elb_target_health_history
                     (target_group, target_id, port, at_ms, state, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(q(OP))?;
            for p in points {
                insert
                    .execute(params![
                        p.target_group,
                        p.target_id,
                        p.port,
                        p.at_ms,
                        p.state,
                        p.reason
                    ])
                    .map_err(q(OP))?;
                touched.insert((p.target_group.as_str(), p.target_id.as_str(), p.port));
                any_gone |= p.state == TargetHealthState::Deregistered;
            }
            let mut prune = tx
                .prepare_cached(
                    "DELETE FROM elb_target_health_history
                     WHERE target_group = ?1 AND target_id = ?2 AND port = ?3
                       AND seq <= (SELECT seq FROM elb_target_health_history
                                   WHERE target_group = ?1 AND target_id = ?2 AND port = ?3
                                   ORDER BY seq DESC LIMIT 1 OFFSET ?4)",
                )
                .map_err(q(OP))?;
            for (group, id, port) in touched {
                prune
                    .execute(params![group, id, port, per_target as i64])
                    .map_err(q(OP))?;
            }
        }
        if any_gone {
            tx.execute(
                "WITH last AS (
                     SELECT target_group, target_id, port, state, seq, ROW_NUMBER() OVER (
                         PARTITION BY target_group, target_id, port ORDER BY seq DESC) AS n
                     FROM elb_target_health_history),
                 dropped AS (
                     SELECT target_group, target_id, port FROM last
                     WHERE n = 1 AND state = ?1
                     ORDER BY seq DESC LIMIT -1 OFFSET ?2)
                 DELETE FROM elb_target_health_history
                 WHERE (target_group, target_id, port) IN dropped",
                params![TargetHealthState::Deregistered, gone_kept as i64],
            )
            .map_err(q(OP))?;
        }
        tx.commit().map_err(q(OP))
    }

    /// The targets' health history as stored: by target, each target's points in the
    /// order they happened. A state or reason this minifargate does not know is a
    /// [`StoreError::BadRow`] naming the row.
    pub fn target_health_history(&self) -> Result<Vec<TargetHealthPoint>, StoreError> {
        const OP: &str = "read the targets' health history";
        let mut st = self
            .conn
            .prepare(
                "SELECT seq, target_group, target_id, port, at_ms, state, reason
                 FROM elb_target_health_history ORDER BY target_group, target_id, port, seq",
            )
            .map_err(q(OP))?;
        let rows = st
            .query_map([], |r| {
                let d = Decoder::new(r, HISTORY, r.get::<_, i64>(0)?.to_string());
                Ok(TargetHealthPoint {
                    target_group: r.get(1)?,
                    target_id: r.get(2)?,
                    port: r.get(3)?,
                    at_ms: r.get(4)?,
                    state: d.state(5, "state")?,
                    reason: d.opt_state(6, "reason")?,
                })
            })
            .map_err(q(OP))?;
        rows.collect::<Result<_, _>>().map_err(q(OP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, at_ms: i64, state: TargetHealthState) -> TargetHealthPoint {
        TargetHealthPoint {
            target_group: "arn:tg/web".into(),
            target_id: id.into(),
            port: 8080,
            at_ms,
            state,
            reason: (state == TargetHealthState::Initial)
                .then_some(TargetHealthReason::RegistrationInProgress),
        }
    }

    #[test]
    fn the_history_is_written_read_back_in_order_and_pruned_as_it_is_written() {
        use TargetHealthState::*;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = [
            point("10.0.0.2", 1_000, Initial),
            point("10.0.0.2", 2_000, Healthy),
        ];
        s.append_target_health(&a, 3, 1).unwrap();
        s.append_target_health(&[point("10.0.0.3", 2_500, Initial)], 3, 1)
            .unwrap();
        assert_eq!(
            s.target_health_history().unwrap(),
            vec![
                a[0].clone(),
                a[1].clone(),
                point("10.0.0.3", 2_500, Initial)
            ]
        );
        // Per target, the last 3 (the oldest go first); another target's are not touched.
        let more = [
            point("10.0.0.2", 3_000, Unhealthy),
            point("10.0.0.2", 4_000, Healthy),
        ];
        s.append_target_health(&more, 3, 1).unwrap();
        let at = |s: &Store| -> Vec<(String, i64)> {
            s.target_health_history()
                .unwrap()
                .into_iter()
                .map(|p| (p.target_id, p.at_ms))
                .collect()
        };
        let ids = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
            v.iter().map(|(i, t)| (i.to_string(), *t)).collect()
        };
        assert_eq!(
            at(&s),
            ids(&[
                ("10.0.0.2", 2_000),
                ("10.0.0.2", 3_000),
                ("10.0.0.2", 4_000),
                ("10.0.0.3", 2_500)
            ])
        );
        // Two targets gone, one kept: the one that went last.
        s.append_target_health(
            &[
                point("10.0.0.3", 5_000, Deregistered),
                point("10.0.0.2", 6_000, Deregistered),
            ],
            3,
            1,
        )
        .unwrap();
        assert_eq!(
            at(&s),
            ids(&[
                ("10.0.0.2", 3_000),
                ("10.0.0.2", 4_000),
                ("10.0.0.2", 6_000)
            ])
        );
        // Listed again: no longer gone, so kept beside the next one gone.
        s.append_target_health(&[point("10.0.0.2", 7_000, Initial)], 3, 1)
            .unwrap();
        s.append_target_health(&[point("10.0.0.4", 8_000, Deregistered)], 3, 1)
            .unwrap();
        assert_eq!(
            at(&s),
            ids(&[
                ("10.0.0.2", 4_000),
                ("10.0.0.2", 6_000),
                ("10.0.0.2", 7_000),
                ("10.0.0.4", 8_000)
            ])
        );
    }

    #[test]
    fn a_stored_state_this_minifargate_does_not_know_is_an_error_naming_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.append_target_health(
            &[point("10.0.0.2", 1_000, TargetHealthState::Healthy)],
            3,
            1,
        )
        .unwrap();
        s.conn
            .execute(
                "INSERT INTO elb_target_health_history
                 (seq, target_group, target_id, port, at_ms, state) VALUES (7, 'g', 't', 1, 2, 'sleepy')",
                [],
            )
            .unwrap();
        let err = s.target_health_history().unwrap_err();
        let StoreError::BadRow(bad) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (bad.table, bad.column, bad.id.as_str()),
            (HISTORY, "state", "7")
        );
        assert_eq!(
            crate::errors::error_chain(&err),
            "failed to decode elb_target_health_history.state of row 7 in the state database: \
             \"sleepy\" is not a known target health state"
        );
    }
}
