//! Task networks: the mode and bridge a task's network lives on, its awsvpc ENI attachment
//! (id, status) and what the network step made, for describe-tasks and dead-task clean-up.

use super::{Store, StoreError};
use rusqlite::{OptionalExtension, params};

/// One task's network as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkRow {
    pub task_id: String,
    /// `awsvpc`, `bridge`, `host` or `none`.
    pub mode: String,
    /// The host bridge (and its subnet) the task's network is on.
    pub bridge: Option<String>,
    pub subnet: Option<String>,
    /// The ENI attachment id (a UUID) ECS shows in `attachments` for awsvpc.
    pub attachment_id: String,
    /// PRECREATED, ATTACHED, DELETED or FAILED (ecs.json `Attachment.status`).
    pub attachment_status: String,
    /// RunTask `networkConfiguration.awsvpcConfiguration` JSON (`{}` when not given).
    pub configuration: String,
    /// The netns crate's `TaskNetwork` JSON once the network is set up.
    pub network: Option<String>,
}

fn q(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

impl Store {
    /// Records (or replaces) a task's network row.
    pub fn save_network(&mut self, n: &NetworkRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO task_networks (task_id, mode, bridge, subnet, attachment_id, \
                 attachment_status, configuration, network) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (task_id) DO UPDATE SET mode = ?2, bridge = ?3, subnet = ?4, \
                 attachment_id = ?5, attachment_status = ?6, configuration = ?7, network = ?8",
                params![
                    n.task_id,
                    n.mode,
                    n.bridge,
                    n.subnet,
                    n.attachment_id,
                    n.attachment_status,
                    n.configuration,
                    n.network
                ],
            )
            .map_err(q("record a task network"))?;
        Ok(())
    }

    /// A task's network row, if it has one.
    pub fn task_network(&self, task_id: &str) -> Result<Option<NetworkRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT task_id, mode, bridge, subnet, attachment_id, attachment_status, \
                 configuration, network FROM task_networks WHERE task_id = ?1",
                [task_id],
                |r| {
                    Ok(NetworkRow {
                        task_id: r.get(0)?,
                        mode: r.get(1)?,
                        bridge: r.get(2)?,
                        subnet: r.get(3)?,
                        attachment_id: r.get(4)?,
                        attachment_status: r.get(5)?,
                        configuration: r.get(6)?,
                        network: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(q("read a task network"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskRow;

    #[test]
    fn save_read_update_and_prune_with_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        let t = TaskRow {
            id: "t1".into(),
            arn: "arn:t1".into(),
            cluster: "default".into(),
            last_status: "STOPPED".into(),
            desired_status: "STOPPED".into(),
            overrides: "{}".into(),
            warnings: "[]".into(),
            stopped_at: Some(1),
            ..Default::default()
        };
        s.insert_task(&t, &[]).unwrap();
        assert_eq!(s.task_network("t1").unwrap(), None);
        let mut n = NetworkRow {
            task_id: "t1".into(),
            mode: "awsvpc".into(),
            bridge: Some("mfg0".into()),
            subnet: Some("10.94.0.0/16".into()),
            attachment_id: "a".into(),
            attachment_status: "PRECREATED".into(),
            configuration: "{}".into(),
            network: None,
        };
        s.save_network(&n).unwrap();
        n.attachment_status = "ATTACHED".into();
        n.network = Some("{}".into());
        s.save_network(&n).unwrap();
        assert_eq!(s.task_network("t1").unwrap(), Some(n));
        assert_eq!(s.prune_stopped_tasks(10).unwrap(), ["t1"]);
        assert_eq!(s.task_network("t1").unwrap(), None);
    }
}
