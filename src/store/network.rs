//! Task networks: the mode and bridge a task's network lives on, its awsvpc ENI attachment
//! (id, status) and what the network step made, for describe-tasks and dead-task clean-up.

use super::{AttachmentStatus, Decoder, Recorded, Store, StoreError, q, to_json};
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
    pub attachment_status: AttachmentStatus,
    /// RunTask `networkConfiguration.awsvpcConfiguration` (`{}` when not given).
    pub configuration: serde_json::Value,
    /// What the network step made, once the network is set up.
    pub network: Option<Recorded>,
}

impl Store {
    /// Inserts a new task with its containers ([`Store::insert_task`]), its cluster unless
    /// it exists (`cluster`: name, ARN, creation time) and its network row `network`, in
    /// one transaction: RunTask's writes before its supervisor starts. Nothing is written
    /// if any fails.
    pub fn insert_launch(
        &mut self,
        cluster: Option<(&str, &str, i64)>,
        t: &super::TaskRow,
        containers: &[super::ContainerRow],
        network: &NetworkRow,
    ) -> Result<(), StoreError> {
        let tx = self.write_tx("insert a task")?;
        super::tasks::insert_task_rows(&tx, cluster, t, containers)?;
        upsert_network(&tx, network)?;
        tx.commit().map_err(q("insert a task"))
    }

    /// Records (or replaces) a task's network row.
    pub fn save_network(&mut self, n: &NetworkRow) -> Result<(), StoreError> {
        upsert_network(&self.conn, n)
    }

    /// A task's network row, if it has one.
    pub fn task_network(&self, task_id: &str) -> Result<Option<NetworkRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT task_id, mode, bridge, subnet, attachment_id, attachment_status, \
                 configuration, network FROM task_networks WHERE task_id = ?1",
                [task_id],
                |r| {
                    let d = Decoder::new(r, "task_networks", r.get(0)?);
                    Ok(NetworkRow {
                        task_id: r.get(0)?,
                        mode: r.get(1)?,
                        bridge: r.get(2)?,
                        subnet: r.get(3)?,
                        attachment_id: r.get(4)?,
                        attachment_status: d.state(5, "attachment_status")?,
                        configuration: d.json(6, "configuration")?,
                        network: d.opt_json(7, "network")?,
                    })
                },
            )
            .optional()
            .map_err(q("read a task network"))
    }
}

/// Writes network row `n` with `conn` (a transaction of the caller's, or none).
fn upsert_network(conn: &rusqlite::Connection, n: &NetworkRow) -> Result<(), StoreError> {
    let configuration = to_json(
        "task_networks",
        "configuration",
        &n.task_id,
        &n.configuration,
    )?;
    let network = n
        .network
        .as_ref()
        .map(|r| to_json("task_networks", "network", &n.task_id, r))
        .transpose()?;
    // Cached: the supervisor writes the row at each step of the network's life.
    conn.prepare_cached(
        "INSERT INTO task_networks (task_id, mode, bridge, subnet, attachment_id, \
         attachment_status, configuration, network) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (task_id) DO UPDATE SET mode = ?2, bridge = ?3, subnet = ?4, \
         attachment_id = ?5, attachment_status = ?6, configuration = ?7, network = ?8",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            n.task_id,
            n.mode,
            n.bridge,
            n.subnet,
            n.attachment_id,
            n.attachment_status,
            configuration,
            network
        ])
    })
    .map_err(q("record a task network"))?;
    Ok(())
}

impl Recorded {
    /// What the network step stored for the task of `row` (`None` before it ran).
    pub fn of(row: &NetworkRow) -> Option<Recorded> {
        row.network.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DesiredStatus, LastStatus, TaskRow};

    /// A store in `dir` holding task `t1` of cluster `default`, as `task` has it.
    fn store_with_task(dir: &std::path::Path, task: TaskRow) -> Store {
        let mut s = Store::open(dir).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        let t = TaskRow {
            id: "t1".into(),
            arn: "arn:t1".into(),
            cluster: "default".into(),
            ..task
        };
        s.insert_task(&t, &[]).unwrap();
        s
    }

    /// RunTask's writes before its supervisor starts are one transaction: the cluster,
    /// the task and its network row are all there, or none is (here the task's insert
    /// fails: its id is taken).
    #[test]
    fn a_launch_writes_cluster_task_and_network_together_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let net = |id: &str| NetworkRow {
            task_id: id.into(),
            mode: "awsvpc".into(),
            attachment_id: format!("a-{id}"),
            configuration: serde_json::json!({}),
            ..Default::default()
        };
        let task = |id: &str, cluster: &str| TaskRow {
            id: id.into(),
            arn: format!("arn:{id}"),
            cluster: cluster.into(),
            ..Default::default()
        };
        s.insert_launch(
            Some(("dev", "arn:dev", 1)),
            &task("t1", "dev"),
            &[],
            &net("t1"),
        )
        .unwrap();
        assert!(s.cluster("dev").unwrap().is_some());
        assert_eq!(s.task_network("t1").unwrap().unwrap().attachment_id, "a-t1");
        // t1 again, in a cluster not made yet, with another network row: refused whole.
        let mut again = net("t1");
        again.attachment_id = "other".into();
        assert!(
            s.insert_launch(
                Some(("prod", "arn:prod", 2)),
                &task("t1", "prod"),
                &[],
                &again
            )
            .is_err()
        );
        assert!(s.cluster("prod").unwrap().is_none());
        assert_eq!(s.task_network("t1").unwrap().unwrap().attachment_id, "a-t1");
    }

    #[test]
    fn save_read_update_and_prune_with_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store_with_task(
            dir.path(),
            TaskRow {
                last_status: LastStatus::Stopped,
                desired_status: DesiredStatus::Stopped,
                stopped_at: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(s.task_network("t1").unwrap(), None);
        let mut n = NetworkRow {
            task_id: "t1".into(),
            mode: "awsvpc".into(),
            bridge: Some("mfg0".into()),
            subnet: Some("10.94.0.0/16".into()),
            attachment_id: "a".into(),
            attachment_status: AttachmentStatus::Precreated,
            configuration: serde_json::json!({"subnets": ["subnet-1"]}),
            network: None,
        };
        s.save_network(&n).unwrap();
        n.attachment_status = AttachmentStatus::Attached;
        n.network = Some(Recorded {
            net: netns::TaskNetwork {
                task_id: "t1".into(),
                mode: netns::NetworkMode::Awsvpc,
                netns_path: None,
                ip: Some(std::net::Ipv4Addr::new(10, 94, 0, 5)),
                prefix_len: Some(16),
                gateway: None,
                mac: None,
                private_dns_name: None,
                mtu: None,
                bindings: Vec::new(),
                unpublished: Vec::new(),
                hosts_file: None,
                resolv_conf: None,
                egress: true,
            },
            private_dns_name: None,
            bindings: Vec::new(),
        });
        s.save_network(&n).unwrap();
        assert_eq!(s.task_network("t1").unwrap(), Some(n));
        assert_eq!(s.prune_stopped_tasks(10).unwrap(), ["t1"]);
        assert_eq!(s.task_network("t1").unwrap(), None);
    }

    #[test]
    fn a_network_row_that_does_not_decode_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store_with_task(dir.path(), TaskRow::default());
        s.save_network(&NetworkRow {
            task_id: "t1".into(),
            mode: "awsvpc".into(),
            attachment_id: "a".into(),
            configuration: serde_json::json!({}),
            ..Default::default()
        })
        .unwrap();
        let raw = |s: &Store, sql: &str| s.conn.execute(sql, []).unwrap();
        for (sql, column) in [
            (
                "UPDATE task_networks SET attachment_status = 'PLUGGED'",
                "attachment_status",
            ),
            (
                "UPDATE task_networks SET attachment_status = 'ATTACHED', network = '{}'",
                "network",
            ),
        ] {
            raw(&s, sql);
            match s.task_network("t1").unwrap_err() {
                StoreError::BadRow(b) => {
                    assert_eq!(
                        (b.table, b.column, b.id.as_str()),
                        ("task_networks", column, "t1")
                    )
                }
                other => panic!("expected BadRow, got {other:?}"),
            }
        }
    }
}
