//! The `servicediscovery_resources` rows: AWS Cloud Map's resources as JSON documents by
//! id (the Cloud Map core, `crate::servicediscovery`, encodes and decodes them).

use super::{Store, StoreError, q};
use rusqlite::params;

impl Store {
    /// Every stored Cloud Map resource: (kind, id, JSON document), by kind then id.
    pub fn servicediscovery_resources(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT kind, id, doc FROM servicediscovery_resources ORDER BY kind, id")
            .map_err(q("read the Cloud Map resources"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(q("read the Cloud Map resources"))?;
        rows.collect::<Result<_, _>>()
            .map_err(q("read the Cloud Map resources"))
    }

    /// Writes (inserts or replaces) one resource.
    pub fn put_servicediscovery_resource(
        &self,
        kind: &str,
        id: &str,
        doc: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO servicediscovery_resources (id, kind, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                params![id, kind, doc],
            )
            .map(|_| ())
            .map_err(q("write a Cloud Map resource"))
    }

    pub fn delete_servicediscovery_resource(&self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM servicediscovery_resources WHERE id = ?1",
                params![id],
            )
            .map(|_| ())
            .map_err(q("delete a Cloud Map resource"))
    }
}
