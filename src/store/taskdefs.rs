//! Task definition families and revisions: register, describe, list, deregister.
//!
//! Ref: ecs.json `TaskDefinition.revision` ("the revision value always increases by one ...
//! even if you deregistered previous revisions in this family"), `ListTaskDefinitionsRequest`
//! (ACTIVE by default, ASC sorts by family then revision), `ListTaskDefinitionFamiliesRequest`
//! (ACTIVE and INACTIVE families by default).

use super::{Store, StoreError};
use crate::taskdef::arn::AwsContext;
use crate::taskdef::model::{Tag, TaskDefinition, TaskDefinitionStatus};
use crate::taskdef::timestamp::Timestamp;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

/// A registered revision as describe-task-definition shows it, with its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTaskDefinition {
    pub definition: TaskDefinition,
    pub tags: Vec<Tag>,
}

impl StoredTaskDefinition {
    pub fn family(&self) -> &str {
        self.definition.family.as_deref().unwrap_or("")
    }

    pub fn revision(&self) -> u32 {
        self.definition
            .revision
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0)
    }

    pub fn status(&self) -> TaskDefinitionStatus {
        self.definition
            .status
            .unwrap_or(TaskDefinitionStatus::Active)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SortOrder {
    #[default]
    #[value(name = "ASC")]
    Asc,
    #[value(name = "DESC")]
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FamilyStatus {
    #[value(name = "ACTIVE")]
    Active,
    #[value(name = "INACTIVE")]
    Inactive,
    #[default]
    #[value(name = "ALL")]
    All,
}

const COLUMNS: &str =
    "family, revision, status, definition, tags, registered_at_ms, deregistered_at_ms";

fn status_str(s: TaskDefinitionStatus) -> &'static str {
    s.as_str()
}

impl Store {
    /// Registers `def` (already validated and normalized, `family` set) as the next revision
    /// of its family, in one write transaction so that concurrent registrations of one family
    /// get distinct revisions.
    pub fn register_task_definition(
        &mut self,
        def: &TaskDefinition,
        tags: &[Tag],
        ctx: &AwsContext,
        now: DateTime<Utc>,
    ) -> Result<StoredTaskDefinition, StoreError> {
        let family = def.family.clone().unwrap_or_default();
        let q = |op| move |source| StoreError::Query { op, source };
        let tx = self.write_tx("register a task definition")?;
        let revision: i64 = tx
            .query_row(
                "INSERT INTO task_definition_families (family, last_revision) VALUES (?1, 1)
                 ON CONFLICT (family) DO UPDATE SET last_revision = last_revision + 1
                 RETURNING last_revision",
                params![family],
                |r| r.get(0),
            )
            .map_err(q("allocate a task definition revision"))?;
        let rev32 = u32::try_from(revision).unwrap_or(u32::MAX);
        let mut stored = def.clone();
        stored.tags = None;
        stored.revision = Some(revision);
        stored.task_definition_arn = Some(ctx.task_definition_arn(&family, rev32));
        stored.registered_by = Some(ctx.principal());
        let body = serde_json::to_string(&stored).map_err(|source| StoreError::Encode {
            family: family.clone(),
            source,
        })?;
        let tags_json = serde_json::to_string(tags).map_err(|source| StoreError::Encode {
            family: family.clone(),
            source,
        })?;
        tx.execute(
            "INSERT INTO task_definitions
                 (family, revision, arn, status, definition, tags, registered_at_ms)
             VALUES (?1, ?2, ?3, 'ACTIVE', ?4, ?5, ?6)",
            params![
                family,
                revision,
                stored.task_definition_arn,
                body,
                tags_json,
                now.timestamp_millis()
            ],
        )
        .map_err(q("insert a task definition"))?;
        tx.commit().map_err(q("commit a task definition"))?;
        tracing::debug!(family, revision, "registered task definition");
        Ok(materialize(
            stored,
            tags.to_vec(),
            TaskDefinitionStatus::Active,
            now.timestamp_millis(),
            None,
        ))
    }

    /// The revision a task definition ARN (or `family:revision`) names, in any status;
    /// `None` when it is not stored or `arn` names no revision.
    pub fn task_definition_by_arn(
        &self,
        arn: &str,
    ) -> Result<Option<StoredTaskDefinition>, StoreError> {
        match crate::taskdef::arn::TaskDefRef::parse(arn) {
            Ok(crate::taskdef::arn::TaskDefRef::Revision(family, revision)) => {
                self.task_definition(&family, Some(revision))
            }
            _ => Ok(None),
        }
    }

    /// `family:revision` in any status, or with `revision` `None` the latest ACTIVE revision.
    pub fn task_definition(
        &self,
        family: &str,
        revision: Option<u32>,
    ) -> Result<Option<StoredTaskDefinition>, StoreError> {
        let row = match revision {
            Some(r) => self.conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM task_definitions WHERE family = ?1 AND revision = ?2"
                ),
                params![family, r],
                read_row,
            ),
            None => self.conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM task_definitions WHERE family = ?1 AND status = 'ACTIVE'
                     ORDER BY revision DESC LIMIT 1"
                ),
                params![family],
                read_row,
            ),
        }
        .optional()
        .map_err(|source| StoreError::Query {
            op: "read a task definition",
            source,
        })?;
        row.map(decode).transpose()
    }

    /// Task definition ARNs of one status, optionally of one family, by family then revision.
    pub fn list_task_definitions(
        &self,
        family: Option<&str>,
        status: TaskDefinitionStatus,
        sort: SortOrder,
    ) -> Result<Vec<String>, StoreError> {
        let order = match sort {
            SortOrder::Asc => "family ASC, revision ASC",
            SortOrder::Desc => "family DESC, revision DESC",
        };
        let q = |source| StoreError::Query {
            op: "list task definitions",
            source,
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT arn FROM task_definitions
                 WHERE status = ?1 AND (?2 IS NULL OR family = ?2) ORDER BY {order}"
            ))
            .map_err(q)?;
        let rows = stmt
            .query_map(params![status_str(status), family], |r| {
                r.get::<_, String>(0)
            })
            .map_err(q)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(q)
    }

    /// Family names starting with `prefix`, filtered by whether they have an ACTIVE revision.
    pub fn list_task_definition_families(
        &self,
        prefix: Option<&str>,
        status: FamilyStatus,
    ) -> Result<Vec<String>, StoreError> {
        let filter = match status {
            FamilyStatus::All => "1",
            FamilyStatus::Active => {
                "EXISTS (SELECT 1 FROM task_definitions t WHERE t.family = f.family AND t.status = 'ACTIVE')"
            }
            FamilyStatus::Inactive => {
                "NOT EXISTS (SELECT 1 FROM task_definitions t WHERE t.family = f.family AND t.status = 'ACTIVE')"
            }
        };
        let q = |source| StoreError::Query {
            op: "list task definition families",
            source,
        };
        // substr rather than LIKE: family names may contain `_`, LIKE's wildcard.
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT family FROM task_definition_families f
                 WHERE (?1 IS NULL OR substr(family, 1, length(?1)) = ?1) AND {filter}
                 ORDER BY family ASC"
            ))
            .map_err(q)?;
        let rows = stmt
            .query_map(params![prefix], |r| r.get::<_, String>(0))
            .map_err(q)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(q)
    }

    /// Marks `family:revision` INACTIVE. Returns `None` if there is no such revision.
    pub fn deregister_task_definition(
        &mut self,
        family: &str,
        revision: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredTaskDefinition>, StoreError> {
        self.change_status(
            ["deregister a task definition", "commit a deregistration"],
            "UPDATE task_definitions
             SET status = 'INACTIVE', deregistered_at_ms = COALESCE(deregistered_at_ms, ?3)
             WHERE family = ?1 AND revision = ?2 AND status = 'ACTIVE'",
            params![family, revision, now.timestamp_millis()],
            family,
            revision,
        )
    }

    /// Runs `update`, a status change of `family:revision`, and reads the revision back, in
    /// one write transaction; `ops` name the change and its commit in errors.
    fn change_status(
        &mut self,
        [op, commit_op]: [&'static str; 2],
        update: &str,
        update_params: impl rusqlite::Params,
        family: &str,
        revision: u32,
    ) -> Result<Option<StoredTaskDefinition>, StoreError> {
        let q = |op| move |source| StoreError::Query { op, source };
        let tx = self.write_tx(op)?;
        tx.execute(update, update_params).map_err(q(op))?;
        let row = tx
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM task_definitions WHERE family = ?1 AND revision = ?2"
                ),
                params![family, revision],
                read_row,
            )
            .optional()
            .map_err(q("read a task definition"))?;
        tx.commit().map_err(q(commit_op))?;
        row.map(decode).transpose()
    }
}

impl Store {
    /// Marks an INACTIVE `family:revision` DELETE_IN_PROGRESS (DeleteTaskDefinitions) and
    /// returns the revision as it now is (an ACTIVE one is returned unchanged, for the
    /// caller's failure); `None` if there is no such revision.
    pub fn delete_task_definition(
        &mut self,
        family: &str,
        revision: u32,
    ) -> Result<Option<StoredTaskDefinition>, StoreError> {
        self.change_status(
            ["delete a task definition", "commit a deletion"],
            "UPDATE task_definitions SET status = 'DELETE_IN_PROGRESS'
             WHERE family = ?1 AND revision = ?2 AND status = 'INACTIVE'",
            params![family, revision],
            family,
            revision,
        )
    }

    /// Removes the DELETE_IN_PROGRESS revisions nothing uses any more: no task that is not
    /// STOPPED, no ACTIVE or DRAINING service and no live deployment names them. Returns
    /// their ARNs. The family keeps its revision counter, so the next registration takes
    /// the next number. Ref: ecs.json `DeleteTaskDefinitions` ("A task definition revision
    /// will stay in DELETE_IN_PROGRESS status until all the associated tasks and services
    /// have been terminated"; "The task definition name is retained by Amazon ECS and the
    /// revision is incremented the next time").
    pub fn purge_deleted_task_definitions(&mut self) -> Result<Vec<String>, StoreError> {
        // Every command's reconcile calls this: a read first, so the usual case (nothing
        // deleted) never takes the write lock other commands and supervisors queue on.
        let any: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM task_definitions WHERE status = 'DELETE_IN_PROGRESS')",
            )
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(super::q("look for deleted task definitions"))?;
        if !any {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare_cached(
                "DELETE FROM task_definitions WHERE status = 'DELETE_IN_PROGRESS'
                 AND arn NOT IN (SELECT task_definition_arn FROM tasks
                                 WHERE last_status != 'STOPPED')
                 AND arn NOT IN (SELECT task_definition_arn FROM services
                                 WHERE status IN ('ACTIVE', 'DRAINING'))
                 AND arn NOT IN (SELECT task_definition_arn FROM service_deployments
                                 WHERE status != 'INACTIVE')
                 RETURNING arn",
            )
            .map_err(super::q("remove deleted task definitions"))?;
        st.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(super::q("remove deleted task definitions"))
    }
}

struct RawRow {
    family: String,
    revision: i64,
    status: String,
    definition: String,
    tags: String,
    registered_at_ms: i64,
    deregistered_at_ms: Option<i64>,
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        family: r.get(0)?,
        revision: r.get(1)?,
        status: r.get(2)?,
        definition: r.get(3)?,
        tags: r.get(4)?,
        registered_at_ms: r.get(5)?,
        deregistered_at_ms: r.get(6)?,
    })
}

fn decode(row: RawRow) -> Result<StoredTaskDefinition, StoreError> {
    let err = |source| StoreError::Decode {
        family: row.family.clone(),
        revision: row.revision,
        source,
    };
    let def: TaskDefinition = serde_json::from_str(&row.definition).map_err(err)?;
    let tags: Vec<Tag> = serde_json::from_str(&row.tags).map_err(err)?;
    let status: TaskDefinitionStatus =
        serde_json::from_value(serde_json::Value::String(row.status.clone())).map_err(|e| {
            StoreError::BadRow(Box::new(super::BadRow {
                table: "task_definitions",
                column: "status",
                id: format!("{}:{}", row.family, row.revision),
                source: e.into(),
            }))
        })?;
    Ok(materialize(
        def,
        tags,
        status,
        row.registered_at_ms,
        row.deregistered_at_ms,
    ))
}

fn materialize(
    mut def: TaskDefinition,
    tags: Vec<Tag>,
    status: TaskDefinitionStatus,
    registered_at_ms: i64,
    deregistered_at_ms: Option<i64>,
) -> StoredTaskDefinition {
    def.status = Some(status);
    def.registered_at = Some(Timestamp::from_ms(registered_at_ms));
    def.deregistered_at = deregistered_at_ms.map(Timestamp::from_ms);
    StoredTaskDefinition {
        definition: def,
        tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskdef::model::ContainerDefinition;

    fn ctx() -> AwsContext {
        AwsContext::defaults()
    }

    fn def(family: &str) -> TaskDefinition {
        TaskDefinition {
            family: Some(family.into()),
            container_definitions: Some(vec![ContainerDefinition {
                name: Some("a".into()),
                image: Some("busybox".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        chrono::TimeZone::timestamp_millis_opt(&Utc, 1_700_000_000_123).unwrap()
    }

    #[test]
    fn revisions_grow_and_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let r1 = s
            .register_task_definition(&def("web"), &[], &ctx(), now())
            .unwrap();
        let r2 = s
            .register_task_definition(&def("web"), &[], &ctx(), now())
            .unwrap();
        assert_eq!((r1.revision(), r2.revision()), (1, 2));
        assert_eq!(
            r2.definition.task_definition_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:task-definition/web:2")
        );
        assert_eq!(
            r1.definition.registered_at.map(|t| t.cli_text()).as_deref(),
            Some("2023-11-14T22:13:20.123000+00:00")
        );
        // Deregister everything; the next revision is still 3.
        for r in [1, 2] {
            let d = s
                .deregister_task_definition("web", r, now())
                .unwrap()
                .unwrap();
            assert_eq!(d.status(), TaskDefinitionStatus::Inactive);
            assert!(d.definition.deregistered_at.is_some());
        }
        assert!(s.task_definition("web", None).unwrap().is_none());
        assert_eq!(
            s.task_definition("web", Some(1)).unwrap().unwrap().status(),
            TaskDefinitionStatus::Inactive
        );
        let r3 = s
            .register_task_definition(&def("web"), &[], &ctx(), now())
            .unwrap();
        assert_eq!(r3.revision(), 3);
        assert_eq!(
            s.task_definition("web", None).unwrap().unwrap().revision(),
            3
        );
        assert!(
            s.deregister_task_definition("web", 9, now())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn lists_and_families() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        for f in ["web", "web_x", "api", "web"] {
            s.register_task_definition(&def(f), &[], &ctx(), now())
                .unwrap();
        }
        s.deregister_task_definition("api", 1, now()).unwrap();
        let arns = s
            .list_task_definitions(None, TaskDefinitionStatus::Active, SortOrder::Asc)
            .unwrap();
        let tails: Vec<&str> = arns.iter().map(|a| a.rsplit('/').next().unwrap()).collect();
        assert_eq!(tails, ["web:1", "web:2", "web_x:1"]);
        let desc = s
            .list_task_definitions(Some("web"), TaskDefinitionStatus::Active, SortOrder::Desc)
            .unwrap();
        assert!(desc[0].ends_with("web:2") && desc.len() == 2);
        let inactive = s
            .list_task_definitions(None, TaskDefinitionStatus::Inactive, SortOrder::Asc)
            .unwrap();
        assert_eq!(inactive.len(), 1);
        assert_eq!(
            s.list_task_definition_families(None, FamilyStatus::All)
                .unwrap(),
            ["api", "web", "web_x"]
        );
        assert_eq!(
            s.list_task_definition_families(Some("web_"), FamilyStatus::All)
                .unwrap(),
            ["web_x"]
        );
        assert_eq!(
            s.list_task_definition_families(None, FamilyStatus::Active)
                .unwrap(),
            ["web", "web_x"]
        );
        assert_eq!(
            s.list_task_definition_families(None, FamilyStatus::Inactive)
                .unwrap(),
            ["api"]
        );
    }

    #[test]
    fn tags_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let tags = vec![Tag {
            key: Some("team".into()),
            value: Some("web".into()),
        }];
        s.register_task_definition(&def("web"), &tags, &ctx(), now())
            .unwrap();
        assert_eq!(
            s.task_definition("web", Some(1)).unwrap().unwrap().tags,
            tags
        );
    }
}
