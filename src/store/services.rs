//! Services (CreateService … DeleteService), their deployments and events, which the
//! scheduler in `serve` reads and updates; and the tags of every taggable resource
//! (TagResource, UntagResource, ListTagsForResource).

use super::{
    Decoder, DeploymentStatus, RolloutState, ServiceDeploymentRecord, ServiceSpec, ServiceStatus,
    Store, StoreError, Tag, q, to_json,
};
use rusqlite::{OptionalExtension, Row, params};

/// One service as stored. Timestamps are epoch milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceRow {
    pub cluster: String,
    pub name: String,
    pub arn: String,
    pub status: ServiceStatus,
    pub task_definition_arn: String,
    pub desired_count: i64,
    /// The rest of the service's settings (see `ecs::services::Spec`).
    pub spec: ServiceSpec,
    pub tags: Vec<Tag>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One deployment of a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentRow {
    /// `ecs-svc/<19 digits>`; its tasks carry it as `startedBy`.
    pub id: String,
    pub cluster: String,
    pub service: String,
    pub status: DeploymentStatus,
    pub task_definition_arn: String,
    pub desired_count: i64,
    pub failed_tasks: i64,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// What the service deployment API shows of it.
    pub sd: ServiceDeploymentRecord,
}

/// One service event, as DescribeServices lists them (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: String,
    pub created_at_ms: i64,
    pub message: String,
}

/// A taggable resource, as its ARN names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Cluster(String),
    TaskDefinition(String, i64),
    Task(String),
    Service { cluster: String, name: String },
}

impl Resource {
    /// The table and the row id (as [`super::BadRow`] names it) that hold the resource.
    fn row(&self) -> (&'static str, String) {
        match self {
            Resource::Cluster(n) => ("clusters", n.clone()),
            Resource::TaskDefinition(f, rev) => ("task_definitions", format!("{f}:{rev}")),
            Resource::Task(id) => ("tasks", id.clone()),
            Resource::Service { cluster, name } => ("services", format!("{cluster}/{name}")),
        }
    }
}

/// ECS keeps a service's latest 100 events. Ref: the ECS developer guide, "Service event
/// messages".
const EVENTS_KEPT: i64 = 100;

const SERVICE_COLUMNS: &str = "cluster, name, arn, status, task_definition_arn, desired_count, \
     spec, tags, created_at_ms, updated_at_ms";

const DEPLOYMENT_COLUMNS: &str = "id, cluster, service, status, task_definition_arn, \
     desired_count, failed_tasks, rollout_state, rollout_state_reason, created_at_ms, \
     updated_at_ms, service_deployment";

fn service_from_row(r: &Row<'_>) -> rusqlite::Result<ServiceRow> {
    let d = Decoder::new(
        r,
        "services",
        format!("{}/{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?),
    );
    Ok(ServiceRow {
        cluster: r.get(0)?,
        name: r.get(1)?,
        arn: r.get(2)?,
        status: d.state(3, "status")?,
        task_definition_arn: r.get(4)?,
        desired_count: r.get(5)?,
        spec: d.json(6, "spec")?,
        tags: d.json(7, "tags")?,
        created_at_ms: r.get(8)?,
        updated_at_ms: r.get(9)?,
    })
}

fn deployment_from_row(r: &Row<'_>) -> rusqlite::Result<DeploymentRow> {
    let d = Decoder::new(r, "service_deployments", r.get(0)?);
    Ok(DeploymentRow {
        id: r.get(0)?,
        cluster: r.get(1)?,
        service: r.get(2)?,
        status: d.state(3, "status")?,
        task_definition_arn: r.get(4)?,
        desired_count: r.get(5)?,
        failed_tasks: r.get(6)?,
        rollout_state: d.state(7, "rollout_state")?,
        rollout_state_reason: r.get(8)?,
        created_at_ms: r.get(9)?,
        updated_at_ms: r.get(10)?,
        sd: d.json(11, "service_deployment")?,
    })
}

fn sd_json(d: &DeploymentRow) -> Result<String, StoreError> {
    to_json("service_deployments", "service_deployment", &d.id, &d.sd)
}

fn insert_deployment(
    tx: &rusqlite::Connection,
    d: &DeploymentRow,
    sd: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO service_deployments ({DEPLOYMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, \
             ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            d.id,
            d.cluster,
            d.service,
            d.status,
            d.task_definition_arn,
            d.desired_count,
            d.failed_tasks,
            d.rollout_state,
            d.rollout_state_reason,
            d.created_at_ms,
            d.updated_at_ms,
            sd
        ],
    )?;
    Ok(())
}

impl Store {
    /// Creates service `s` with its first (PRIMARY) deployment. False when a service of
    /// that name is ACTIVE or DRAINING in the cluster; an INACTIVE one is replaced.
    pub fn create_service(
        &mut self,
        s: &ServiceRow,
        first: &DeploymentRow,
    ) -> Result<bool, StoreError> {
        let id = format!("{}/{}", s.cluster, s.name);
        let spec = to_json("services", "spec", &id, &s.spec)?;
        let tags = to_json("services", "tags", &id, &s.tags)?;
        let sd = sd_json(first)?;
        let tx = self.write_tx("create a service")?;
        let status: Option<ServiceStatus> = tx
            .query_row(
                "SELECT status FROM services WHERE cluster = ?1 AND name = ?2",
                params![s.cluster, s.name],
                |r| Decoder::new(r, "services", id.clone()).state(0, "status"),
            )
            .optional()
            .map_err(q("create a service"))?;
        match status {
            None => {}
            Some(ServiceStatus::Inactive) => {
                tx.execute(
                    "DELETE FROM services WHERE cluster = ?1 AND name = ?2",
                    params![s.cluster, s.name],
                )
                .map_err(q("replace an inactive service"))?;
            }
            Some(_) => return Ok(false),
        }
        tx.execute(
            &format!(
                "INSERT INTO services ({SERVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                 ?8, ?9, ?10)"
            ),
            params![
                s.cluster,
                s.name,
                s.arn,
                s.status,
                s.task_definition_arn,
                s.desired_count,
                spec,
                tags,
                s.created_at_ms,
                s.updated_at_ms
            ],
        )
        .map_err(q("create a service"))?;
        insert_deployment(&tx, first, &sd).map_err(q("create a deployment"))?;
        tx.commit().map_err(q("create a service"))?;
        Ok(true)
    }

    /// Service `name` of `cluster`, in any status.
    pub fn service(&self, cluster: &str, name: &str) -> Result<Option<ServiceRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {SERVICE_COLUMNS} FROM services WHERE cluster = ?1 AND name = ?2"),
                params![cluster, name],
                service_from_row,
            )
            .optional()
            .map_err(q("read a service"))
    }

    /// ACTIVE and DRAINING services (of `cluster`, or of every cluster), by cluster and name.
    pub fn list_services(&self, cluster: Option<&str>) -> Result<Vec<ServiceRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {SERVICE_COLUMNS} FROM services WHERE status != 'INACTIVE' \
                 AND (?1 IS NULL OR cluster = ?1) ORDER BY cluster, name"
            ))
            .map_err(q("list services"))?;
        stmt.query_map(params![cluster], service_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("list services"))
    }

    /// Writes a service's mutable fields (status, task definition, count, spec, tags).
    pub fn save_service(&mut self, s: &ServiceRow) -> Result<(), StoreError> {
        let id = format!("{}/{}", s.cluster, s.name);
        let spec = to_json("services", "spec", &id, &s.spec)?;
        let tags = to_json("services", "tags", &id, &s.tags)?;
        self.conn
            .execute(
                "UPDATE services SET status = ?3, task_definition_arn = ?4, desired_count = ?5, \
                 spec = ?6, tags = ?7, updated_at_ms = ?8 WHERE cluster = ?1 AND name = ?2",
                params![
                    s.cluster,
                    s.name,
                    s.status,
                    s.task_definition_arn,
                    s.desired_count,
                    spec,
                    tags,
                    s.updated_at_ms
                ],
            )
            .map_err(q("update a service"))?;
        Ok(())
    }

    /// Makes `d` the PRIMARY deployment of its service; the previous PRIMARY becomes ACTIVE.
    pub fn start_deployment(&mut self, d: &DeploymentRow) -> Result<(), StoreError> {
        let sd = sd_json(d)?;
        let tx = self.write_tx("start a deployment")?;
        tx.execute(
            "UPDATE service_deployments SET status = 'ACTIVE', desired_count = 0, updated_at_ms = ?3 \
             WHERE cluster = ?1 AND service = ?2 AND status = 'PRIMARY'",
            params![d.cluster, d.service, d.created_at_ms],
        )
        .map_err(q("start a deployment"))?;
        insert_deployment(&tx, d, &sd).map_err(q("start a deployment"))?;
        tx.commit().map_err(q("start a deployment"))
    }

    /// The PRIMARY and ACTIVE deployments of a service, PRIMARY first, then newest first.
    pub fn deployments(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<DeploymentRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM service_deployments WHERE cluster = ?1 \
                 AND service = ?2 AND status != 'INACTIVE' \
                 ORDER BY status = 'PRIMARY' DESC, created_at_ms DESC, rowid DESC"
            ))
            .map_err(q("read deployments"))?;
        stmt.query_map(params![cluster, service], deployment_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("read deployments"))
    }

    /// Every deployment of a service, INACTIVE ones too, newest first.
    pub fn all_deployments(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<DeploymentRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM service_deployments WHERE cluster = ?1 \
                 AND service = ?2 ORDER BY created_at_ms DESC, rowid DESC"
            ))
            .map_err(q("read deployments"))?;
        stmt.query_map(params![cluster, service], deployment_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("read deployments"))
    }

    /// Deployment `id` (`ecs-svc/…`), in any status.
    pub fn deployment(&self, id: &str) -> Result<Option<DeploymentRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {DEPLOYMENT_COLUMNS} FROM service_deployments WHERE id = ?1"),
                [id],
                deployment_from_row,
            )
            .optional()
            .map_err(q("read a deployment"))
    }

    pub fn save_deployment(&mut self, d: &DeploymentRow) -> Result<(), StoreError> {
        let sd = sd_json(d)?;
        self.conn
            .execute(
                "UPDATE service_deployments SET status = ?2, desired_count = ?3, \
                 failed_tasks = ?4, rollout_state = ?5, rollout_state_reason = ?6, \
                 updated_at_ms = ?7, service_deployment = ?8 WHERE id = ?1",
                params![
                    d.id,
                    d.status,
                    d.desired_count,
                    d.failed_tasks,
                    d.rollout_state,
                    d.rollout_state_reason,
                    d.updated_at_ms,
                    sd
                ],
            )
            .map_err(q("update a deployment"))?;
        Ok(())
    }

    /// Records a service event, keeping the newest [`EVENTS_KEPT`].
    pub fn add_service_event(
        &mut self,
        cluster: &str,
        service: &str,
        e: &EventRow,
    ) -> Result<(), StoreError> {
        let tx = self.write_tx("record a service event")?;
        tx.execute(
            "INSERT INTO service_events (id, cluster, service, created_at_ms, message) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.id, cluster, service, e.created_at_ms, e.message],
        )
        .map_err(q("record a service event"))?;
        tx.execute(
            "DELETE FROM service_events WHERE cluster = ?1 AND service = ?2 AND seq NOT IN \
             (SELECT seq FROM service_events WHERE cluster = ?1 AND service = ?2 \
              ORDER BY seq DESC LIMIT ?3)",
            params![cluster, service, EVENTS_KEPT],
        )
        .map_err(q("trim service events"))?;
        tx.commit().map_err(q("record a service event"))
    }

    /// A service's events, newest first.
    pub fn service_events(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, created_at_ms, message FROM service_events WHERE cluster = ?1 \
                 AND service = ?2 ORDER BY seq DESC",
            )
            .map_err(q("read service events"))?;
        stmt.query_map(params![cluster, service], |r| {
            Ok(EventRow {
                id: r.get(0)?,
                created_at_ms: r.get(1)?,
                message: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(q("read service events"))
    }

    /// How many tasks of deployment `id` stopped without ever reaching RUNNING.
    pub fn failed_deployment_tasks(&self, id: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE started_by = ?1 AND last_status = 'STOPPED' \
                 AND started_at_ms IS NULL",
                [id],
                |r| r.get(0),
            )
            .map_err(q("count failed tasks"))
    }

    /// The tags of `r`, or None when there is no such resource.
    pub fn resource_tags(&self, r: &Resource) -> Result<Option<Vec<Tag>>, StoreError> {
        let (sql, a, b): (&str, String, Option<String>) = match r {
            Resource::Cluster(n) => (
                "SELECT tags FROM clusters WHERE name = ?1 AND status = 'ACTIVE' AND ?2 IS NULL",
                n.clone(),
                None,
            ),
            Resource::TaskDefinition(f, rev) => (
                "SELECT tags FROM task_definitions WHERE family = ?1 AND revision = ?2",
                f.clone(),
                Some(rev.to_string()),
            ),
            Resource::Task(id) => (
                "SELECT tags FROM tasks WHERE id = ?1 AND ?2 IS NULL",
                id.clone(),
                None,
            ),
            Resource::Service { cluster, name } => (
                "SELECT tags FROM services WHERE cluster = ?1 AND name = ?2 \
                 AND status != 'INACTIVE'",
                cluster.clone(),
                Some(name.clone()),
            ),
        };
        let (table, id) = r.row();
        self.conn
            .query_row(sql, params![a, b], |row| {
                Decoder::new(row, table, id.clone()).json(0, "tags")
            })
            .optional()
            .map_err(q("read tags"))
    }

    /// Replaces the tags of `r`.
    pub fn set_resource_tags(&mut self, r: &Resource, tags: &[Tag]) -> Result<(), StoreError> {
        let (table, id) = r.row();
        let tags = to_json(table, "tags", &id, &tags)?;
        let (sql, a, b): (&str, String, Option<String>) = match r {
            Resource::Cluster(n) => (
                "UPDATE clusters SET tags = ?3 WHERE name = ?1 AND ?2 IS NULL",
                n.clone(),
                None,
            ),
            Resource::TaskDefinition(f, rev) => (
                "UPDATE task_definitions SET tags = ?3 WHERE family = ?1 AND revision = ?2",
                f.clone(),
                Some(rev.to_string()),
            ),
            Resource::Task(id) => (
                "UPDATE tasks SET tags = ?3 WHERE id = ?1 AND ?2 IS NULL",
                id.clone(),
                None,
            ),
            Resource::Service { cluster, name } => (
                "UPDATE services SET tags = ?3 WHERE cluster = ?1 AND name = ?2",
                cluster.clone(),
                Some(name.clone()),
            ),
        };
        self.conn
            .execute(sql, params![a, b, tags])
            .map_err(q("write tags"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> ServiceRow {
        ServiceRow {
            cluster: "default".into(),
            name: name.into(),
            arn: format!("arn:s/{name}"),
            status: ServiceStatus::Active,
            task_definition_arn: "arn:td/web:1".into(),
            desired_count: 2,
            spec: ServiceSpec::default(),
            tags: Vec::new(),
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    fn dep(id: &str, name: &str, at: i64) -> DeploymentRow {
        DeploymentRow {
            id: id.into(),
            cluster: "default".into(),
            service: name.into(),
            status: DeploymentStatus::Primary,
            task_definition_arn: "arn:td/web:1".into(),
            desired_count: 2,
            rollout_state: RolloutState::InProgress,
            created_at_ms: at,
            updated_at_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn services_deployments_events_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.create_cluster("default", "arn:c", 1).unwrap();
        assert!(s.create_service(&svc("web"), &dep("d1", "web", 1)).unwrap());
        assert!(!s.create_service(&svc("web"), &dep("d2", "web", 2)).unwrap());
        s.start_deployment(&dep("d3", "web", 3)).unwrap();
        let ds = s.deployments("default", "web").unwrap();
        assert_eq!(
            ds.iter()
                .map(|d| (d.id.as_str(), d.status))
                .collect::<Vec<_>>(),
            [
                ("d3", DeploymentStatus::Primary),
                ("d1", DeploymentStatus::Active)
            ]
        );
        for i in 0..105 {
            let e = EventRow {
                id: format!("e{i}"),
                created_at_ms: i,
                message: format!("m{i}"),
            };
            s.add_service_event("default", "web", &e).unwrap();
        }
        let ev = s.service_events("default", "web").unwrap();
        assert_eq!((ev.len(), ev[0].message.as_str()), (100, "m104"));

        let r = Resource::Service {
            cluster: "default".into(),
            name: "web".into(),
        };
        let tags = vec![Tag {
            key: "a".into(),
            value: "b".into(),
        }];
        s.set_resource_tags(&r, &tags).unwrap();
        assert_eq!(s.resource_tags(&r).unwrap(), Some(tags));
        assert_eq!(
            s.resource_tags(&Resource::Cluster("default".into()))
                .unwrap(),
            Some(Vec::new())
        );
        assert!(
            s.resource_tags(&Resource::Task("nope".into()))
                .unwrap()
                .is_none()
        );

        // Deleted: the name can be created again, with fresh deployments and events.
        let mut gone = svc("web");
        gone.status = ServiceStatus::Inactive;
        s.save_service(&gone).unwrap();
        assert!(s.list_services(None).unwrap().is_empty());
        assert!(s.create_service(&svc("web"), &dep("d4", "web", 4)).unwrap());
        assert_eq!(s.deployments("default", "web").unwrap().len(), 1);
        assert!(s.service_events("default", "web").unwrap().is_empty());
        assert_eq!(s.list_services(Some("default")).unwrap().len(), 1);
    }

    #[test]
    fn rows_that_do_not_decode_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.create_cluster("default", "arn:c", 1).unwrap();
        assert!(s.create_service(&svc("web"), &dep("d1", "web", 1)).unwrap());
        let raw = |s: &Store, sql: &str| s.conn.execute(sql, []).unwrap();
        let bad = |e: StoreError| match e {
            StoreError::BadRow(b) => (b.table, b.column, b.id),
            other => panic!("expected BadRow, got {other:?}"),
        };

        // (The schema's CHECK keeps unknown service and deployment statuses out.)
        raw(&s, "UPDATE services SET spec = '{\"launchType\":'");
        assert_eq!(
            bad(s.list_services(None).unwrap_err()),
            ("services", "spec", "default/web".into())
        );
        // The network configuration is JSON text inside the spec: it must decode too.
        raw(
            &s,
            "UPDATE services SET spec = '{\"networkConfiguration\":\"{nope\"}'",
        );
        assert_eq!(
            bad(s.service("default", "web").unwrap_err()),
            ("services", "spec", "default/web".into())
        );
        raw(&s, "UPDATE services SET spec = '{}'");
        assert!(s.service("default", "web").unwrap().is_some());

        raw(
            &s,
            "UPDATE service_deployments SET rollout_state = 'in_progress'",
        );
        assert_eq!(
            bad(s.deployments("default", "web").unwrap_err()),
            ("service_deployments", "rollout_state", "d1".into())
        );

        raw(&s, "UPDATE clusters SET tags = '[{\"value\":\"no key\"}]'");
        assert_eq!(
            bad(s
                .resource_tags(&Resource::Cluster("default".into()))
                .unwrap_err()),
            ("clusters", "tags", "default".into())
        );
        raw(&s, "UPDATE clusters SET status = 'GONE'");
        assert_eq!(
            bad(s.cluster("default").unwrap_err()),
            ("clusters", "status", "default".into())
        );
    }
}
