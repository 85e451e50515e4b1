//! Clusters (CreateCluster, DescribeClusters, ListClusters, DeleteCluster) and the launch
//! phases of tasks (`run-task --timeline`).

use super::{ClusterStatus, Decoder, Store, StoreError, Tag, q, to_json};
use rusqlite::{OptionalExtension, params};

/// One cluster as stored; task counts are computed from `tasks` when read.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    pub name: String,
    pub arn: String,
    /// ACTIVE, or INACTIVE after delete-cluster.
    pub status: ClusterStatus,
    pub created_at_ms: i64,
    pub running_tasks: i64,
    pub pending_tasks: i64,
    /// ACTIVE services (ECS's activeServicesCount).
    pub active_services: i64,
    pub tags: Vec<Tag>,
    /// ClusterSettings entries (`{"name","value"}`), e.g. containerInsights.
    pub settings: Vec<serde_json::Value>,
    /// Capacity provider names associated with the cluster.
    pub capacity_providers: Vec<String>,
    /// CapacityProviderStrategyItem entries.
    pub default_capacity_provider_strategy: Vec<serde_json::Value>,
    /// UpdateCluster's `configuration` and `serviceConnectDefaults` as given (`{}` when unset).
    pub configuration: serde_json::Value,
}

/// What UpdateCluster, UpdateClusterSettings and PutClusterCapacityProviders change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterChange {
    pub settings: Option<Vec<serde_json::Value>>,
    pub capacity_providers: Option<Vec<String>>,
    pub default_capacity_provider_strategy: Option<Vec<serde_json::Value>>,
    pub configuration: Option<serde_json::Value>,
}

/// What `delete_cluster` did.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteCluster {
    Deleted(Box<ClusterRow>),
    /// No such cluster (or already INACTIVE).
    NotFound,
    /// Tasks that are not STOPPED yet (ECS's ClusterContainsTasksException).
    HasActiveTasks(i64),
}

/// One launch phase of a task (container `""`) or of one of its containers.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRow {
    pub container: String,
    pub phase: String,
    pub started_at_us: i64,
    pub ended_at_us: i64,
}

// Ref: ECS counts RUNNING tasks in runningTasksCount and PENDING ones (all states
// before RUNNING here: PROVISIONING, PENDING) in pendingTasksCount.
const CLUSTER_SELECT: &str = "SELECT c.name, c.arn, c.status, c.created_at_ms, \
     (SELECT COUNT(*) FROM tasks t WHERE t.cluster = c.name AND t.last_status = 'RUNNING'), \
     (SELECT COUNT(*) FROM tasks t WHERE t.cluster = c.name \
        AND t.last_status IN ('PROVISIONING', 'PENDING')), \
     (SELECT COUNT(*) FROM services s WHERE s.cluster = c.name AND s.status = 'ACTIVE'), \
     c.tags, c.settings, c.capacity_providers, c.default_capacity_provider_strategy, \
     c.configuration \
     FROM clusters c";

fn cluster_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClusterRow> {
    let d = Decoder::new(r, "clusters", r.get(0)?);
    Ok(ClusterRow {
        name: r.get(0)?,
        arn: r.get(1)?,
        status: d.state(2, "status")?,
        created_at_ms: r.get(3)?,
        running_tasks: r.get(4)?,
        pending_tasks: r.get(5)?,
        active_services: r.get(6)?,
        tags: d.json(7, "tags")?,
        settings: d.json(8, "settings")?,
        capacity_providers: d.json(9, "capacity_providers")?,
        default_capacity_provider_strategy: d.json(10, "default_capacity_provider_strategy")?,
        configuration: d.json(11, "configuration")?,
    })
}

impl Store {
    /// Creates cluster `name` ACTIVE, or makes an INACTIVE one ACTIVE again (as ECS does
    /// for a re-created name); an ACTIVE one is returned unchanged.
    pub fn create_cluster(
        &mut self,
        name: &str,
        arn: &str,
        now_ms: i64,
    ) -> Result<ClusterRow, StoreError> {
        self.conn
            .execute(
                "INSERT INTO clusters (name, arn, status, created_at_ms) VALUES (?1, ?2, 'ACTIVE', ?3) \
                 ON CONFLICT (name) DO UPDATE SET status = 'ACTIVE', \
                 created_at_ms = CASE WHEN status = 'ACTIVE' THEN created_at_ms ELSE ?3 END",
                params![name, arn, now_ms],
            )
            .map_err(q("create a cluster"))?;
        Ok(self.cluster(name)?.expect("just written"))
    }

    /// Changes an existing cluster's settings, capacity providers or configuration (only
    /// the members `c` sets); false when there is no such cluster.
    pub fn update_cluster(&mut self, name: &str, c: &ClusterChange) -> Result<bool, StoreError> {
        let json = |col: &'static str, v: &Option<_>| -> Result<Option<String>, StoreError> {
            v.as_ref()
                .map(|v: &serde_json::Value| to_json("clusters", col, name, v))
                .transpose()
        };
        let settings = json("settings", &c.settings.clone().map(serde_json::Value::from))?;
        let providers = json(
            "capacity_providers",
            &c.capacity_providers.clone().map(serde_json::Value::from),
        )?;
        let strategy = json(
            "default_capacity_provider_strategy",
            &c.default_capacity_provider_strategy
                .clone()
                .map(serde_json::Value::from),
        )?;
        let configuration = json("configuration", &c.configuration)?;
        let n = self
            .conn
            .execute(
                "UPDATE clusters SET settings = COALESCE(?2, settings), \
                 capacity_providers = COALESCE(?3, capacity_providers), \
                 default_capacity_provider_strategy = COALESCE(?4, \
                 default_capacity_provider_strategy), configuration = COALESCE(?5, \
                 configuration) WHERE name = ?1",
                params![name, settings, providers, strategy, configuration],
            )
            .map_err(q("update a cluster"))?;
        Ok(n > 0)
    }

    /// Every stored account setting as (principal, name, value); principal `""` holds the
    /// account defaults (PutAccountSettingDefault).
    pub fn account_settings(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT principal, name, value FROM account_settings ORDER BY name, principal")
            .map_err(q("read account settings"))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("read account settings"))
    }

    /// Sets account setting `name` of `principal` (`""`: the account default).
    pub fn put_account_setting(
        &mut self,
        principal: &str,
        name: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO account_settings (principal, name, value) VALUES \
                 (?1, ?2, ?3)",
                params![principal, name, value],
            )
            .map_err(q("write an account setting"))?;
        Ok(())
    }

    /// A cluster by name, ACTIVE or INACTIVE.
    pub fn cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        // Cached: a launch looks its cluster up several times.
        self.conn
            .prepare_cached(&format!("{CLUSTER_SELECT} WHERE c.name = ?1"))
            .and_then(|mut stmt| stmt.query_row([name], cluster_from_row).optional())
            .map_err(q("read a cluster"))
    }

    /// ACTIVE clusters by name.
    pub fn list_clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{CLUSTER_SELECT} WHERE c.status = 'ACTIVE' ORDER BY c.name"
            ))
            .map_err(q("list clusters"))?;
        stmt.query_map([], cluster_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("list clusters"))
    }

    /// Marks an ACTIVE cluster without unstopped tasks INACTIVE.
    pub fn delete_cluster(&mut self, name: &str) -> Result<DeleteCluster, StoreError> {
        let tx = self.write_tx("delete a cluster")?;
        let status: Option<ClusterStatus> = tx
            .query_row("SELECT status FROM clusters WHERE name = ?1", [name], |r| {
                Decoder::new(r, "clusters", name.to_string()).state(0, "status")
            })
            .optional()
            .map_err(q("delete a cluster"))?;
        if status != Some(ClusterStatus::Active) {
            return Ok(DeleteCluster::NotFound);
        }
        let active: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE cluster = ?1 AND last_status != 'STOPPED'",
                [name],
                |r| r.get(0),
            )
            .map_err(q("delete a cluster"))?;
        if active > 0 {
            return Ok(DeleteCluster::HasActiveTasks(active));
        }
        tx.execute(
            "UPDATE clusters SET status = 'INACTIVE' WHERE name = ?1",
            [name],
        )
        .map_err(q("delete a cluster"))?;
        tx.commit().map_err(q("delete a cluster"))?;
        Ok(DeleteCluster::Deleted(Box::new(
            self.cluster(name)?.expect("still there, INACTIVE"),
        )))
    }

    /// Records (or replaces) how long one phase of a task or container took.
    pub fn record_phase(
        &mut self,
        task_id: &str,
        container: &str,
        phase: &str,
        started_at_us: i64,
        ended_at_us: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO task_phases (task_id, container, phase, started_at_us, \
                 ended_at_us) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    task_id,
                    container,
                    phase,
                    started_at_us,
                    ended_at_us
                ])
            })
            .map_err(q("record a launch phase"))?;
        Ok(())
    }

    /// The recorded phases of a task, in the order they started.
    pub fn phases(&self, task_id: &str) -> Result<Vec<PhaseRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT container, phase, started_at_us, ended_at_us FROM task_phases \
                 WHERE task_id = ?1 ORDER BY started_at_us, container, phase",
            )
            .map_err(q("read launch phases"))?;
        stmt.query_map([task_id], |r| {
            Ok(PhaseRow {
                container: r.get(0)?,
                phase: r.get(1)?,
                started_at_us: r.get(2)?,
                ended_at_us: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(q("read launch phases"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DesiredStatus, LastStatus, Tag, TaskRow};

    fn task(id: &str, cluster: &str, last: LastStatus) -> TaskRow {
        TaskRow {
            id: id.into(),
            arn: format!("arn:t/{id}"),
            cluster: cluster.into(),
            family: "f".into(),
            last_status: last,
            desired_status: DesiredStatus::Running,
            created_at: 1,
            version: 1,
            ..Default::default()
        }
    }

    #[test]
    fn clusters_count_tasks_and_refuse_deletion_while_tasks_are_active() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let c = s.create_cluster("dev", "arn:c/dev", 10).unwrap();
        assert_eq!((c.status, c.running_tasks), (ClusterStatus::Active, 0));
        s.insert_task(&task("a", "dev", LastStatus::Running), &[])
            .unwrap();
        s.insert_task(&task("b", "dev", LastStatus::Pending), &[])
            .unwrap();
        s.insert_task(&task("c", "dev", LastStatus::Provisioning), &[])
            .unwrap();
        let c = s.cluster("dev").unwrap().unwrap();
        assert_eq!((c.running_tasks, c.pending_tasks), (1, 2));
        assert_eq!(
            s.delete_cluster("dev").unwrap(),
            DeleteCluster::HasActiveTasks(3)
        );
        for id in ["a", "b", "c"] {
            let mut t = task(id, "dev", LastStatus::Stopped);
            t.stopped_at = Some(2);
            s.save_task(&t).unwrap();
        }
        let DeleteCluster::Deleted(c) = s.delete_cluster("dev").unwrap() else {
            panic!("not deleted")
        };
        assert_eq!(c.status, ClusterStatus::Inactive);
        assert!(s.list_clusters().unwrap().is_empty());
        assert_eq!(s.delete_cluster("dev").unwrap(), DeleteCluster::NotFound);
        assert_eq!(s.delete_cluster("nope").unwrap(), DeleteCluster::NotFound);
        // Re-created: ACTIVE again, same ARN.
        let c = s.create_cluster("dev", "arn:c/dev", 20).unwrap();
        assert_eq!((c.status, c.created_at_ms), (ClusterStatus::Active, 20));
        assert_eq!(s.create_cluster("dev", "x", 30).unwrap().created_at_ms, 20);
        assert_eq!(s.list_clusters().unwrap().len(), 1);
    }

    #[test]
    fn phases_are_recorded_replaced_and_pruned_with_their_task() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.create_cluster("default", "arn:c", 1).unwrap();
        let mut t = task("a", "default", LastStatus::Stopped);
        t.stopped_at = Some(5);
        t.tags = vec![Tag {
            key: "k".into(),
            value: "v".into(),
        }];
        t.enable_execute_command = true;
        s.insert_task(&t, &[]).unwrap();
        let (got, _) = s.task("a").unwrap().unwrap();
        assert_eq!(got.tags, t.tags);
        assert!(got.enable_execute_command);
        s.record_phase("a", "app", "create", 20, 30).unwrap();
        s.record_phase("a", "", "network", 10, 15).unwrap();
        s.record_phase("a", "app", "create", 20, 40).unwrap();
        let p = s.phases("a").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].phase.as_str(), p[1].ended_at_us), ("network", 40));
        assert_eq!(s.prune_stopped_tasks(6).unwrap(), ["a"]);
        assert!(s.phases("a").unwrap().is_empty());
    }
}
