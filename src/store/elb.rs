//! The `elb_resources` rows: ELBv2's resources as JSON documents by ARN (the ELB core,
//! `crate::elb`, encodes and decodes them).

use super::{Store, StoreError, q};
use rusqlite::params;

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
}
