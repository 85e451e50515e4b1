//! Clusters, tasks and task containers: rows the run-task CLI creates and the task's
//! supervisor updates on every transition; describe/list/stop read them.

use super::{
    Decoder, DesiredStatus, HealthStatus, LastStatus, LaunchRecord, StopCode, Store, StoreError,
    Tag, TaskOverride, q, to_json,
};
use crate::taskdef::TaskDefinition;
use rusqlite::{OptionalExtension, Row, params};

/// One task as stored. Timestamps are epoch milliseconds.
/// Answered by the covering index `tasks_liveness` alone (migration 9).
const LIVENESS_SQL: &str = "SELECT id, supervisor_pid, supervisor_start_time, created_at_ms \
     FROM tasks WHERE last_status <> 'STOPPED'";

/// A task as one-box placement accounts it ([`Store::placement_rows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRow {
    pub family: String,
    /// Shared by the rows whose stored definition is the same text (the copies of one
    /// service or `--count`): decoded once.
    pub definition: std::rc::Rc<TaskDefinition>,
    pub launch_type: String,
    pub group: Option<String>,
    pub last_status: LastStatus,
    pub desired_status: DesiredStatus,
}

/// A task's supervisor as recorded, for [`Store::unstopped_liveness`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    pub id: String,
    pub supervisor_pid: Option<i64>,
    pub supervisor_start_time: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub arn: String,
    pub cluster: String,
    pub task_definition_arn: String,
    pub family: String,
    /// The task definition the task runs (overrides applied); shared by the rows read
    /// together whose stored definition is the same text (a service's tasks).
    pub definition: std::sync::Arc<TaskDefinition>,
    /// RunTask `overrides`.
    pub overrides: TaskOverride,
    pub launch_type: String,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub last_status: LastStatus,
    pub desired_status: DesiredStatus,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    /// What this task does differently from ECS.
    pub warnings: Vec<String>,
    pub supervisor_pid: Option<i64>,
    /// Start time of the supervisor process (clock ticks, /proc/PID/stat field 22), so a
    /// reused pid is not taken for it.
    pub supervisor_start_time: Option<i64>,
    pub created_at: i64,
    pub pull_started_at: Option<i64>,
    pub pull_stopped_at: Option<i64>,
    pub started_at: Option<i64>,
    pub stopping_at: Option<i64>,
    pub execution_stopped_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub version: i64,
    /// RunTask `tags`.
    pub tags: Vec<Tag>,
    pub enable_execute_command: bool,
    /// The tasks that share image digests (versionConsistency): a service deployment's id,
    /// or one RunTask call's `run/<id>`. See [`Store::pin_image`].
    pub image_scope: Option<String>,
    /// What RunTask/StartTask recorded besides the columns above.
    pub launch: LaunchRecord,
    /// UpdateTaskProtection: protected from service scale-in and deployments until then
    /// (epoch ms).
    pub protected_until: Option<i64>,
}

impl TaskRow {
    /// Whether the task is protected at `now_ms` (an expired protection is none).
    pub fn protected_at(&self, now_ms: i64) -> bool {
        self.protected_until.is_some_and(|t| t > now_ms)
    }
}

/// One container of a task as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerRow {
    pub task_id: String,
    pub idx: i64,
    pub name: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub runtime_id: Option<String>,
    pub arn: String,
    pub essential: bool,
    pub last_status: LastStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// Set for a container with a healthCheck.
    pub health_status: Option<HealthStatus>,
    /// When the container started and when its process exited (epoch ms).
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
}

/// Filters of `list-tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub cluster: Option<String>,
    pub family: Option<String>,
    pub desired_status: Option<DesiredStatus>,
    pub started_by: Option<String>,
    /// The task's group (`service:NAME` for a service's tasks).
    pub group: Option<String>,
    pub launch_type: Option<String>,
}

/// A RunTask clientToken already used in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct RunToken {
    /// The request it came with, without the token (JSON text).
    pub request: String,
    pub task_arns: Vec<String>,
    pub created_at_ms: i64,
}

/// A scope's pinned digest for a container: read several times in a launch (cached).
const PIN_SELECT: &str = "SELECT digest FROM image_pins WHERE scope = ?1 AND container = ?2";

const TASK_COLUMNS: &str = "id, arn, cluster, task_definition_arn, family, definition, overrides, \
     launch_type, started_by, grp, cpu, memory, last_status, desired_status, stop_code, \
     stopped_reason, warnings, supervisor_pid, supervisor_start_time, created_at_ms, \
     pull_started_at_ms, pull_stopped_at_ms, started_at_ms, stopping_at_ms, \
     execution_stopped_at_ms, stopped_at_ms, version, tags, enable_execute_command, image_scope, \
     launch, protected_until_ms";

const CONTAINER_COLUMNS: &str = "task_id, idx, name, image, image_digest, runtime_id, essential, \
     last_status, exit_code, reason, cpu, memory, memory_reservation, arn, health_status, started_at_ms, finished_at_ms";

/// A row of [`LIVENESS_SQL`].
fn liveness_from_row(r: &Row<'_>) -> rusqlite::Result<Liveness> {
    Ok(Liveness {
        id: r.get(0)?,
        supervisor_pid: r.get(1)?,
        supervisor_start_time: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    task_row(r, |d| d.json(5, "definition").map(std::sync::Arc::new))
}

/// A task row of [`TASK_COLUMNS`], its definition (column 5) from `definition`.
fn task_row(
    r: &Row<'_>,
    definition: impl FnOnce(&Decoder<'_, '_>) -> rusqlite::Result<std::sync::Arc<TaskDefinition>>,
) -> rusqlite::Result<TaskRow> {
    let d = Decoder::new(r, "tasks", r.get(0)?);
    Ok(TaskRow {
        id: r.get(0)?,
        arn: r.get(1)?,
        cluster: r.get(2)?,
        task_definition_arn: r.get(3)?,
        family: r.get(4)?,
        definition: definition(&d)?,
        overrides: d.json(6, "overrides")?,
        launch_type: r.get(7)?,
        started_by: r.get(8)?,
        group: r.get(9)?,
        cpu: r.get(10)?,
        memory: r.get(11)?,
        last_status: d.state(12, "last_status")?,
        desired_status: d.state(13, "desired_status")?,
        stop_code: d.opt_state(14, "stop_code")?,
        stopped_reason: r.get(15)?,
        warnings: d.json(16, "warnings")?,
        supervisor_pid: r.get(17)?,
        supervisor_start_time: r.get(18)?,
        created_at: r.get(19)?,
        pull_started_at: r.get(20)?,
        pull_stopped_at: r.get(21)?,
        started_at: r.get(22)?,
        stopping_at: r.get(23)?,
        execution_stopped_at: r.get(24)?,
        stopped_at: r.get(25)?,
        version: r.get(26)?,
        tags: d.json(27, "tags")?,
        enable_execute_command: r.get(28)?,
        image_scope: r.get(29)?,
        launch: d.json(30, "launch")?,
        protected_until: r.get(31)?,
    })
}

fn container_from_row(r: &Row<'_>) -> rusqlite::Result<ContainerRow> {
    let d = Decoder::new(
        r,
        "task_containers",
        format!("{}/{}", r.get::<_, String>(0)?, r.get::<_, String>(2)?),
    );
    Ok(ContainerRow {
        task_id: r.get(0)?,
        idx: r.get(1)?,
        name: r.get(2)?,
        image: r.get(3)?,
        image_digest: r.get(4)?,
        runtime_id: r.get(5)?,
        essential: r.get(6)?,
        last_status: d.state(7, "last_status")?,
        exit_code: r.get(8)?,
        reason: r.get(9)?,
        cpu: r.get(10)?,
        memory: r.get(11)?,
        memory_reservation: r.get(12)?,
        arn: r.get(13)?,
        health_status: d.opt_state(14, "health_status")?,
        started_at: r.get(15)?,
        finished_at: r.get(16)?,
    })
}

/// The rows [`Store::group_tasks`] read last, by (cluster, group), with the state of the
/// database they were read in: SQLite's `data_version` (it changes when another
/// connection commits) and this connection's `total_changes` (it changes with each row
/// this connection writes). While both are the same, the same query gives the same rows.
#[derive(Default)]
pub(crate) struct GroupCache {
    stamp: Option<(i64, u64)>,
    groups: std::collections::HashMap<(String, String), Vec<GroupTask>>,
}

/// One task of a group with its containers, as [`Store::group_tasks`] gives it.
pub type GroupTask = (TaskRow, Vec<ContainerRow>);

impl GroupCache {
    fn get(&self, stamp: (i64, u64), cluster: &str, group: &str) -> Option<&[GroupTask]> {
        if self.stamp != Some(stamp) {
            return None;
        }
        self.groups
            .get(&(cluster.to_owned(), group.to_owned()))
            .map(Vec::as_slice)
    }

    fn put(&mut self, stamp: (i64, u64), cluster: &str, group: &str, rows: Vec<GroupTask>) {
        if self.stamp != Some(stamp) {
            self.groups.clear();
            self.stamp = Some(stamp);
        }
        self.groups
            .insert((cluster.to_owned(), group.to_owned()), rows);
    }
}

impl Store {
    /// Creates cluster `name` unless it exists (RunTask on `default` creates it, like ECS).
    pub fn ensure_cluster(&mut self, name: &str, arn: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO clusters (name, arn, created_at_ms) VALUES (?1, ?2, ?3)",
                params![name, arn, now_ms],
            )
            .map_err(q("create a cluster"))?;
        Ok(())
    }

    /// Inserts a new task with its containers in one transaction (the tests' shorthand
    /// for [`Store::insert_launch`]).
    #[cfg(test)]
    pub fn insert_task(
        &mut self,
        t: &TaskRow,
        containers: &[ContainerRow],
    ) -> Result<(), StoreError> {
        let tx = self.write_tx("insert a task")?;
        insert_task_rows(&tx, None, t, containers)?;
        tx.commit().map_err(q("insert a task"))
    }

    /// Writes every mutable field of a task (the supervisor owns its task's row).
    pub fn save_task(&mut self, t: &TaskRow) -> Result<(), StoreError> {
        let warnings = to_json("tasks", "warnings", &t.id, &t.warnings)?;
        // Cached: the supervisor writes its task at every transition.
        self.conn
            .prepare_cached(
                "UPDATE tasks SET last_status = ?2, desired_status = ?3, stop_code = ?4, \
                 stopped_reason = ?5, warnings = ?6, supervisor_pid = ?7, \
                 supervisor_start_time = ?8, pull_started_at_ms = ?9, pull_stopped_at_ms = ?10, \
                 started_at_ms = ?11, stopping_at_ms = ?12, execution_stopped_at_ms = ?13, \
                 stopped_at_ms = ?14, version = version + 1 WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    t.id,
                    t.last_status,
                    t.desired_status,
                    t.stop_code,
                    t.stopped_reason,
                    warnings,
                    t.supervisor_pid,
                    t.supervisor_start_time,
                    t.pull_started_at,
                    t.pull_stopped_at,
                    t.started_at,
                    t.stopping_at,
                    t.execution_stopped_at,
                    t.stopped_at
                ])
            })
            .map_err(q("update a task"))?;
        Ok(())
    }

    /// Records the supervisor process of a task (and nothing else, so it never races the
    /// supervisor's own writes).
    pub fn set_supervisor(
        &mut self,
        id: &str,
        pid: i64,
        start_time: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE tasks SET supervisor_pid = ?2, supervisor_start_time = ?3 WHERE id = ?1",
                params![id, pid, start_time],
            )
            .map_err(q("record a task's supervisor"))?;
        Ok(())
    }

    /// Writes every mutable field of a container.
    pub fn save_container(&mut self, c: &ContainerRow) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE task_containers SET image_digest = ?3, runtime_id = ?4, last_status = ?5, \
                 exit_code = ?6, reason = ?7, health_status = ?8, started_at_ms = ?9, \
                 finished_at_ms = ?10 WHERE task_id = ?1 AND name = ?2",
            )
            .and_then(|mut st| {
                st.execute(params![
                    c.task_id,
                    c.name,
                    c.image_digest,
                    c.runtime_id,
                    c.last_status,
                    c.exit_code,
                    c.reason,
                    c.health_status,
                    c.started_at,
                    c.finished_at
                ])
            })
            .map_err(q("update a container"))?;
        Ok(())
    }

    /// A task by id, with its containers in definition order.
    pub fn task(&self, id: &str) -> Result<Option<(TaskRow, Vec<ContainerRow>)>, StoreError> {
        // Cached: an attached run-task polls its tasks with these two.
        let t = self
            .conn
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
            .and_then(|mut st| st.query_row([id], task_from_row).optional())
            .map_err(q("read a task"))?;
        let Some(t) = t else { return Ok(None) };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {CONTAINER_COLUMNS} FROM task_containers WHERE task_id = ?1 ORDER BY idx"
            ))
            .map_err(q("read task containers"))?;
        let cs = stmt
            .query_map([id], container_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("read task containers"))?;
        Ok(Some((t, cs)))
    }

    /// The tasks of task group `group` (`service:<name>`) in `cluster` that are not
    /// STOPPED, oldest first, each with its containers. Two queries on the group's index
    /// whatever the number of tasks: the service scheduler reads this for every service
    /// on every pass.
    #[allow(clippy::type_complexity)]
    ///
    /// A caller that asks again while nothing was written (an idle service scheduler's
    /// pass each second) gets the rows it read last time: none is read or decoded again
    /// while the database is as it was ([`GroupCache`]).
    pub fn group_tasks(&self, cluster: &str, group: &str) -> Result<Vec<GroupTask>, StoreError> {
        let stamp = (self.data_version()?, self.conn.total_changes());
        if let Some(rows) = self.groups.borrow().get(stamp, cluster, group) {
            return Ok(rows.to_vec());
        }
        let rows = self.read_group_tasks(cluster, group)?;
        self.groups
            .borrow_mut()
            .put(stamp, cluster, group, rows.clone());
        Ok(rows)
    }

    fn read_group_tasks(&self, cluster: &str, group: &str) -> Result<Vec<GroupTask>, StoreError> {
        // The copies of one definition (a service's tasks) are decoded once.
        let mut decoded: std::collections::HashMap<String, std::sync::Arc<TaskDefinition>> =
            Default::default();
        let tasks = self
            .conn
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE cluster = ?1 AND grp = ?2 \
                 AND last_status <> 'STOPPED' ORDER BY created_at_ms, rowid"
            ))
            .and_then(|mut st| {
                st.query_map([cluster, group], |r| {
                    task_row(r, |d| {
                        let text = r.get_ref(5)?.as_str()?;
                        if let Some(def) = decoded.get(text) {
                            return Ok(def.clone());
                        }
                        let def: std::sync::Arc<TaskDefinition> =
                            std::sync::Arc::new(d.json(5, "definition")?);
                        decoded.insert(text.to_owned(), def.clone());
                        Ok(def)
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(q("list a group's tasks"))?;
        let mut containers: std::collections::HashMap<String, Vec<ContainerRow>> =
            std::collections::HashMap::new();
        self.conn
            .prepare_cached(&format!(
                "SELECT {CONTAINER_COLUMNS} FROM task_containers WHERE task_id IN \
                 (SELECT id FROM tasks WHERE cluster = ?1 AND grp = ?2 \
                 AND last_status <> 'STOPPED') ORDER BY task_id, idx"
            ))
            .and_then(|mut st| {
                for c in st.query_map([cluster, group], container_from_row)? {
                    let c = c?;
                    containers.entry(c.task_id.clone()).or_default().push(c);
                }
                Ok(())
            })
            .map_err(q("read a group's task containers"))?;
        Ok(tasks
            .into_iter()
            .map(|t| {
                let cs = containers.remove(&t.id).unwrap_or_default();
                (t, cs)
            })
            .collect())
    }

    /// Tasks matching `f`, newest first.
    pub fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR cluster = ?1) \
                 AND (?2 IS NULL OR family = ?2) AND (?3 IS NULL OR desired_status = ?3) \
                 AND (?4 IS NULL OR started_by = ?4) AND (?5 IS NULL OR grp = ?5) \
                 AND (?6 IS NULL OR launch_type = ?6) ORDER BY created_at_ms DESC, rowid DESC"
            ))
            .map_err(q("list tasks"))?;
        stmt.query_map(
            params![
                f.cluster,
                f.family,
                f.desired_status,
                f.started_by,
                f.group,
                f.launch_type
            ],
            task_from_row,
        )
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(q("list tasks"))
    }

    /// Deletes STOPPED tasks (and their containers) that stopped before `before_ms`;
    /// returns their ids so their directories can go too.
    pub fn prune_stopped_tasks(&mut self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        // Every RunTask prunes: a read first, so the usual case (nothing to forget) never
        // takes the write lock other commands and supervisors queue on.
        let any: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE last_status = 'STOPPED' \
                 AND stopped_at_ms < ?1)",
            )
            .and_then(|mut st| st.query_row([before_ms], |r| r.get(0)))
            .map_err(q("look for stopped tasks to prune"))?;
        if !any {
            return Ok(Vec::new());
        }
        let tx = self.write_tx("prune stopped tasks")?;
        let ids = {
            let mut stmt = tx
                .prepare(
                    "SELECT id FROM tasks WHERE last_status = 'STOPPED' AND stopped_at_ms < ?1",
                )
                .map_err(q("prune stopped tasks"))?;
            stmt.query_map([before_ms], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(q("prune stopped tasks"))?
        };
        for id in &ids {
            tx.execute("DELETE FROM task_containers WHERE task_id = ?1", [id])
                .map_err(q("prune stopped tasks"))?;
            tx.execute("DELETE FROM tasks WHERE id = ?1", [id])
                .map_err(q("prune stopped tasks"))?;
        }
        if !ids.is_empty() {
            // A pin lives as long as a task of its scope, or its deployment, is left.
            tx.execute(
                "DELETE FROM image_pins WHERE scope NOT IN (SELECT image_scope FROM tasks \
                 WHERE image_scope IS NOT NULL) AND scope NOT IN (SELECT id FROM \
                 service_deployments WHERE status <> 'INACTIVE')",
                [],
            )
            .map_err(q("prune stopped tasks"))?;
        }
        tx.commit().map_err(q("prune stopped tasks"))?;
        Ok(ids)
    }

    /// The image digest the tasks of `scope` run for container `container`: `digest` if
    /// this is the first task of the scope to resolve it, else the digest the first one
    /// recorded (versionConsistency: one digest per container for a whole deployment).
    /// Ref: docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-ecs.html
    /// (Container image resolution); ecs.json `ContainerImage`.
    pub fn pin_image(
        &mut self,
        scope: &str,
        container: &str,
        digest: &str,
    ) -> Result<String, StoreError> {
        self.in_transaction("pin an image digest", |s| {
            s.conn
                .execute(
                    "INSERT OR IGNORE INTO image_pins (scope, container, digest, created_at_ms) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        scope,
                        container,
                        digest,
                        chrono::Utc::now().timestamp_millis()
                    ],
                )
                .map_err(q("pin an image digest"))?;
            s.conn
                .prepare_cached(PIN_SELECT)
                .and_then(|mut stmt| stmt.query_row(params![scope, container], |r| r.get(0)))
                .map_err(q("pin an image digest"))
        })
    }

    /// The digest pinned for `container` in `scope`, if a task of the scope resolved it.
    pub fn image_pin(&self, scope: &str, container: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached(PIN_SELECT)
            .and_then(|mut stmt| {
                stmt.query_row(params![scope, container], |r| r.get(0))
                    .optional()
            })
            .map_err(q("read an image pin"))
    }

    /// Sets (or clears, with `None`) task `id`'s protection; false when there is no such
    /// task. Only this column is written, so it never races the supervisor's writes.
    pub fn set_task_protection(
        &mut self,
        id: &str,
        until_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET protected_until_ms = ?2 WHERE id = ?1",
                params![id, until_ms],
            )
            .map_err(q("update a task's protection"))?;
        Ok(n > 0)
    }

    /// The RunTask clientToken `token` of `cluster`, if used since `since_ms`.
    pub fn run_token(
        &self,
        cluster: &str,
        token: &str,
        since_ms: i64,
    ) -> Result<Option<RunToken>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT request, task_arns, created_at_ms FROM run_tokens WHERE cluster = ?1 \
                 AND token = ?2 AND created_at_ms >= ?3",
                params![cluster, token, since_ms],
                |r| {
                    let d = Decoder::new(r, "run_tokens", token.to_string());
                    Ok(RunToken {
                        request: r.get(0)?,
                        task_arns: d.json(1, "task_arns")?,
                        created_at_ms: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(q("read a RunTask client token"))?;
        Ok(row)
    }

    /// Claims RunTask clientToken `token` of `cluster` for `request` in one write
    /// transaction, so two calls with one token cannot both start tasks: `None` when this
    /// call claimed it (its `task_arns` are empty until [`Self::save_run_token`]), else the
    /// use that holds it (empty `task_arns`: that call is still starting its tasks). Uses
    /// older than `expired_before_ms` are forgotten first.
    pub fn claim_run_token(
        &mut self,
        cluster: &str,
        token: &str,
        request: &str,
        now_ms: i64,
        expired_before_ms: i64,
    ) -> Result<Option<RunToken>, StoreError> {
        let what = "claim a RunTask client token";
        let tx = self.write_tx(what)?;
        tx.execute(
            "DELETE FROM run_tokens WHERE created_at_ms < ?1",
            [expired_before_ms],
        )
        .map_err(q(what))?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO run_tokens (cluster, token, request, task_arns, \
                 created_at_ms) VALUES (?1, ?2, ?3, '[]', ?4)",
                params![cluster, token, request, now_ms],
            )
            .map_err(q(what))?;
        tx.commit().map_err(q(what))?;
        if inserted == 1 {
            return Ok(None);
        }
        self.run_token(cluster, token, expired_before_ms)
    }

    /// Claims the lowest free slot below `slots` for `task`'s user namespace, returning
    /// it (the same slot again if the task holds one); `None` when every slot is held by a
    /// task that is not STOPPED. `range_of(slot)` gives the ids recorded with it.
    pub fn claim_userns_slot(
        &mut self,
        task: &str,
        slots: u32,
        range_of: impl Fn(u32) -> (u32, u32),
    ) -> Result<Option<u32>, StoreError> {
        let what = "claim a user namespace id range";
        let tx = self.write_tx(what)?;
        tx.execute(
            "DELETE FROM userns_slots WHERE task_id NOT IN \
             (SELECT id FROM tasks WHERE last_status <> 'STOPPED')",
            [],
        )
        .map_err(q(what))?;
        let held: Option<u32> = tx
            .query_row(
                "SELECT slot FROM userns_slots WHERE task_id = ?1",
                [task],
                |r| r.get(0),
            )
            .optional()
            .map_err(q(what))?;
        if held.is_some() {
            return Ok(held);
        }
        // The first gap: slot 0 if free, else the lowest slot whose successor is free.
        let free: Option<u32> = tx
            .query_row(
                "SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM userns_slots WHERE slot = 0) \
                 UNION ALL SELECT MIN(slot + 1) FROM userns_slots a WHERE NOT EXISTS \
                 (SELECT 1 FROM userns_slots b WHERE b.slot = a.slot + 1) LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(q(what))?;
        let Some(slot) = free.filter(|s| *s < slots) else {
            return Ok(None);
        };
        let (start, count) = range_of(slot);
        tx.execute(
            "INSERT INTO userns_slots (slot, task_id, start, count) VALUES (?1, ?2, ?3, ?4)",
            params![slot, task, start, count],
        )
        .map_err(q(what))?;
        tx.commit().map_err(q(what))?;
        Ok(Some(slot))
    }

    /// The host ids (start, count) of `task`'s user namespace, if it holds a slot.
    pub fn userns_range(&self, task: &str) -> Result<Option<(u32, u32)>, StoreError> {
        self.conn
            .query_row(
                "SELECT start, count FROM userns_slots WHERE task_id = ?1",
                [task],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(q("read a task's user namespace range"))
    }

    /// Frees `task`'s slot (at teardown; a dead supervisor's is reclaimed by the next claim).
    pub fn release_userns_slot(&mut self, task: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM userns_slots WHERE task_id = ?1", [task])
            .map_err(q("release a user namespace id range"))?;
        Ok(())
    }

    /// Gives up a claim of [`Self::claim_run_token`] whose RunTask failed, so a retry with
    /// the token runs again (as ECS does for a failed call).
    pub fn release_run_token(&mut self, cluster: &str, token: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM run_tokens WHERE cluster = ?1 AND token = ?2 AND task_arns = '[]'",
                params![cluster, token],
            )
            .map_err(q("release a RunTask client token"))?;
        Ok(())
    }

    /// Records RunTask clientToken `token` of `cluster` (replacing an expired use) and
    /// forgets the ones older than `expired_before_ms`.
    pub fn save_run_token(
        &mut self,
        cluster: &str,
        token: &str,
        t: &RunToken,
        expired_before_ms: i64,
    ) -> Result<(), StoreError> {
        let arns = to_json("run_tokens", "task_arns", token, &t.task_arns)?;
        let tx = self.write_tx("record a RunTask client token")?;
        tx.execute(
            "DELETE FROM run_tokens WHERE created_at_ms < ?1",
            [expired_before_ms],
        )
        .map_err(q("record a RunTask client token"))?;
        tx.execute(
            "INSERT OR REPLACE INTO run_tokens (cluster, token, request, task_arns, \
             created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![cluster, token, t.request, arns, t.created_at_ms],
        )
        .map_err(q("record a RunTask client token"))?;
        tx.commit().map_err(q("record a RunTask client token"))
    }

    /// Tasks that are not STOPPED (candidates for the dead-supervisor check).
    /// What telling each unstopped task's supervisor alive needs, and nothing more:
    /// reconcile walks these on every command that lists tasks, so no task definition is decoded.
    pub fn unstopped_liveness(&self) -> Result<Vec<Liveness>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(LIVENESS_SQL)
            .map_err(q("list running tasks"))?;
        stmt.query_map([], liveness_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("list running tasks"))
    }

    /// Task `id`'s supervisor as recorded, if the task is not STOPPED: what a check of its
    /// supervisor needs, with no definition decoded (the scheduler checks its services'
    /// tasks on every pass).
    pub fn liveness(&self, id: &str) -> Result<Option<Liveness>, StoreError> {
        self.conn
            .prepare_cached(&format!("{LIVENESS_SQL} AND id = ?1"))
            .and_then(|mut st| st.query_row([id], liveness_from_row).optional())
            .map_err(q("read a task's supervisor"))
    }

    /// The ids of the tasks not STOPPED, in one query (the network GC's liveness).
    pub fn unstopped_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM tasks WHERE last_status <> 'STOPPED'")
            .map_err(q("list running tasks"))?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
            .map_err(q("list running tasks"))
    }

    /// What placement on this box needs of cluster `cluster`'s EC2 tasks that are not
    /// STOPPED, and nothing more: at 1000 running tasks, decoding every row whole on each
    /// RunTask (overrides, tags, warnings, launch record, and the FARGATE tasks that take
    /// nothing from the box) cost the launch ~5 ms (docs/benchmarks.md, "Stop 45"). A
    /// definition is decoded once per distinct stored text: N copies of one task
    /// definition (a service, an idle fleet) cost one decode and N text comparisons.
    pub fn placement_rows(&self, cluster: &str) -> Result<Vec<PlacementRow>, StoreError> {
        let mut decoded: std::collections::HashMap<String, std::rc::Rc<TaskDefinition>> =
            Default::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, family, definition, launch_type, grp, last_status, desired_status \
                 FROM tasks WHERE cluster = ?1 AND last_status <> 'STOPPED' \
                 AND launch_type <> 'FARGATE'",
            )
            .map_err(q("list the box's tasks"))?;
        let mut rows = stmt.query([cluster]).map_err(q("list the box's tasks"))?;
        let mut out = Vec::new();
        let mut row = || -> rusqlite::Result<Option<PlacementRow>> {
            let Some(r) = rows.next()? else {
                return Ok(None);
            };
            let d = Decoder::new(r, "tasks", r.get(0)?);
            let text = r.get_ref(2)?.as_str()?;
            let definition = match decoded.get(text) {
                Some(def) => def.clone(),
                None => {
                    let def = std::rc::Rc::new(d.json::<TaskDefinition>(2, "definition")?);
                    decoded.insert(text.to_owned(), def.clone());
                    def
                }
            };
            Ok(Some(PlacementRow {
                family: r.get(1)?,
                definition,
                launch_type: r.get(3)?,
                group: r.get(4)?,
                last_status: d.state(5, "last_status")?,
                desired_status: d.state(6, "desired_status")?,
            }))
        };
        while let Some(r) = row().map_err(q("list the box's tasks"))? {
            out.push(r);
        }
        Ok(out)
    }

    /// The id, lastStatus and desiredStatus of every task that is not STOPPED, and nothing
    /// else (no definition to decode): what a watcher of state changes reads each second.
    pub fn unstopped_statuses(
        &self,
    ) -> Result<Vec<(String, LastStatus, DesiredStatus)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, last_status, desired_status FROM tasks WHERE last_status <> 'STOPPED'",
            )
            .map_err(q("list running tasks"))?;
        stmt.query_map([], |r| {
            let d = Decoder::new(r, "tasks", r.get(0)?);
            Ok((
                r.get(0)?,
                d.state(1, "last_status")?,
                d.state(2, "desired_status")?,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(q("list running tasks"))
    }

    /// The containers of every task that is not STOPPED, by task id, in their order: one
    /// query for what [`Store::task`] would read task by task.
    pub fn unstopped_containers(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<ContainerRow>>, StoreError> {
        let mut out: std::collections::HashMap<String, Vec<ContainerRow>> = Default::default();
        self.conn
            .prepare_cached(&format!(
                "SELECT {CONTAINER_COLUMNS} FROM task_containers WHERE task_id IN \
                 (SELECT id FROM tasks WHERE last_status <> 'STOPPED') ORDER BY task_id, idx"
            ))
            .and_then(|mut st| {
                for c in st.query_map([], container_from_row)? {
                    let c = c?;
                    out.entry(c.task_id.clone()).or_default().push(c);
                }
                Ok(())
            })
            .map_err(q("read the running tasks' containers"))?;
        Ok(out)
    }

    pub fn unstopped_tasks(&self) -> Result<Vec<TaskRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE last_status <> 'STOPPED'"
            ))
            .map_err(q("list running tasks"))?;
        stmt.query_map([], task_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(q("list running tasks"))
    }
}

/// Inserts task `t` and its `containers` in transaction `tx`, its cluster first unless it
/// exists (`cluster`: its name, ARN and creation time; RunTask on `default` creates it,
/// like ECS).
pub(super) fn insert_task_rows(
    tx: &rusqlite::Connection,
    cluster: Option<(&str, &str, i64)>,
    t: &TaskRow,
    containers: &[ContainerRow],
) -> Result<(), StoreError> {
    let definition = to_json("tasks", "definition", &t.id, &t.definition)?;
    let overrides = to_json("tasks", "overrides", &t.id, &t.overrides)?;
    let warnings = to_json("tasks", "warnings", &t.id, &t.warnings)?;
    let tags = to_json("tasks", "tags", &t.id, &t.tags)?;
    let launch = to_json("tasks", "launch", &t.id, &t.launch)?;
    if let Some((name, arn, now_ms)) = cluster {
        tx.execute(
            "INSERT OR IGNORE INTO clusters (name, arn, created_at_ms) VALUES (?1, ?2, ?3)",
            params![name, arn, now_ms],
        )
        .map_err(q("create a cluster"))?;
    }
    tx.execute(
        &format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
             ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, \
             ?26, ?27, ?28, ?29, ?30, ?31, ?32)"
        ),
        params![
            t.id,
            t.arn,
            t.cluster,
            t.task_definition_arn,
            t.family,
            definition,
            overrides,
            t.launch_type,
            t.started_by,
            t.group,
            t.cpu,
            t.memory,
            t.last_status,
            t.desired_status,
            t.stop_code,
            t.stopped_reason,
            warnings,
            t.supervisor_pid,
            t.supervisor_start_time,
            t.created_at,
            t.pull_started_at,
            t.pull_stopped_at,
            t.started_at,
            t.stopping_at,
            t.execution_stopped_at,
            t.stopped_at,
            t.version,
            tags,
            t.enable_execute_command,
            t.image_scope,
            launch,
            t.protected_until
        ],
    )
    .map_err(q("insert a task"))?;
    for c in containers {
        insert_container(tx, c)?;
    }
    Ok(())
}

fn insert_container(tx: &rusqlite::Connection, c: &ContainerRow) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO task_containers ({CONTAINER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
             ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ),
        params![
            c.task_id,
            c.idx,
            c.name,
            c.image,
            c.image_digest,
            c.runtime_id,
            c.essential,
            c.last_status,
            c.exit_code,
            c.reason,
            c.cpu,
            c.memory,
            c.memory_reservation,
            c.arn,
            c.health_status,
            c.started_at,
            c.finished_at
        ],
    )
    .map_err(q("insert a container"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userns_slots_never_overlap_between_unstopped_tasks_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        let mut rows = Vec::new();
        for id in ["a", "b", "c", "d"] {
            let t = TaskRow {
                id: id.into(),
                arn: format!("arn:{id}"),
                cluster: "default".into(),
                family: "f".into(),
                last_status: LastStatus::Running,
                desired_status: DesiredStatus::Running,
                version: 1,
                ..Default::default()
            };
            s.insert_task(&t, &[]).unwrap();
            rows.push(t);
        }
        let range = |slot: u32| (100_000 + slot * 65536, 65536);
        assert_eq!(s.claim_userns_slot("a", 3, range).unwrap(), Some(0));
        assert_eq!(s.claim_userns_slot("b", 3, range).unwrap(), Some(1));
        assert_eq!(s.claim_userns_slot("a", 3, range).unwrap(), Some(0), "held");
        assert_eq!(s.claim_userns_slot("c", 3, range).unwrap(), Some(2));
        assert_eq!(
            s.claim_userns_slot("d", 3, range).unwrap(),
            None,
            "all held"
        );
        assert_eq!(s.userns_range("b").unwrap(), Some((165_536, 65536)));
        // b's supervisor died: its task is STOPPED, and its slot is the next one given.
        rows[1].last_status = LastStatus::Stopped;
        s.save_task(&rows[1]).unwrap();
        assert_eq!(s.claim_userns_slot("d", 3, range).unwrap(), Some(1));
        assert_eq!(s.userns_range("b").unwrap(), None);
        s.release_userns_slot("a").unwrap();
        assert_eq!(s.userns_range("a").unwrap(), None);
        s.release_userns_slot("c").unwrap();
        assert_eq!(s.claim_userns_slot("a", 3, range).unwrap(), Some(0));
        assert_eq!(s.claim_userns_slot("c", 3, range).unwrap(), Some(2));
    }

    #[test]
    fn a_group_read_again_has_what_this_or_another_connection_wrote_since() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        let task = |id: &str, at: i64| TaskRow {
            id: id.into(),
            arn: format!("arn:{id}"),
            cluster: "default".into(),
            family: "f".into(),
            group: Some("service:web".into()),
            last_status: LastStatus::Running,
            desired_status: DesiredStatus::Running,
            created_at: at,
            version: 1,
            ..Default::default()
        };
        s.insert_task(&task("a", 1), &[]).unwrap();
        let ids = |s: &Store| -> Vec<(String, LastStatus)> {
            s.group_tasks("default", "service:web")
                .unwrap()
                .into_iter()
                .map(|(t, _)| (t.id, t.last_status))
                .collect()
        };
        assert_eq!(ids(&s), [("a".to_string(), LastStatus::Running)]);
        // Asked again with nothing written: the same rows.
        assert_eq!(ids(&s), [("a".to_string(), LastStatus::Running)]);
        // This connection writes.
        s.insert_task(&task("b", 2), &[]).unwrap();
        assert_eq!(ids(&s).len(), 2);
        // Another connection (a supervisor) commits: seen at once.
        let mut other = Store::open(dir.path()).unwrap();
        let mut a = task("a", 1);
        a.last_status = LastStatus::Stopped;
        a.desired_status = DesiredStatus::Stopped;
        a.version = 2;
        other.save_task(&a).unwrap();
        assert_eq!(ids(&s), [("b".to_string(), LastStatus::Running)]);
        let mut b = task("b", 2);
        b.last_status = LastStatus::Deprovisioning;
        b.version = 2;
        other.save_task(&b).unwrap();
        assert_eq!(ids(&s), [("b".to_string(), LastStatus::Deprovisioning)]);
    }

    #[test]
    fn a_group_s_tasks_are_its_unstopped_ones_oldest_first_each_with_its_containers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        s.ensure_cluster("other", "arn:o", 1).unwrap();
        let row = |id: &str, cluster: &str, group: &str, last: LastStatus, at: i64| TaskRow {
            id: id.into(),
            arn: format!("arn:{id}"),
            cluster: cluster.into(),
            family: "f".into(),
            group: Some(group.into()),
            last_status: last,
            desired_status: DesiredStatus::Running,
            created_at: at,
            version: 1,
            ..Default::default()
        };
        let container = |task: &str, idx: i64, name: &str| ContainerRow {
            task_id: task.into(),
            idx,
            name: name.into(),
            image: "busybox".into(),
            last_status: LastStatus::Running,
            ..Default::default()
        };
        for (t, n) in [
            (
                row("new", "default", "service:web", LastStatus::Running, 3),
                2,
            ),
            (
                row("old", "default", "service:web", LastStatus::Pending, 1),
                1,
            ),
            (
                row("gone", "default", "service:web", LastStatus::Stopped, 2),
                1,
            ),
            (
                row("else", "default", "service:db", LastStatus::Running, 2),
                1,
            ),
            (
                row("away", "other", "service:web", LastStatus::Running, 2),
                1,
            ),
            (
                row("bare", "default", "service:web", LastStatus::Running, 4),
                0,
            ),
        ] {
            let cs: Vec<_> = (0..n)
                .map(|i| container(&t.id, i, &format!("c{i}")))
                .collect();
            s.insert_task(&t, &cs).unwrap();
        }
        let got = s.group_tasks("default", "service:web").unwrap();
        let shape: Vec<(&str, Vec<&str>)> = got
            .iter()
            .map(|(t, cs)| {
                assert!(cs.iter().all(|c| c.task_id == t.id));
                (t.id.as_str(), cs.iter().map(|c| c.name.as_str()).collect())
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("old", vec!["c0"]),
                ("new", vec!["c0", "c1"]),
                ("bare", vec![])
            ]
        );
        let mut live = s.unstopped_statuses().unwrap();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        let ids: Vec<&str> = live.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(ids, ["away", "bare", "else", "new", "old"]);
        assert_eq!(
            live[4],
            (
                "old".to_string(),
                LastStatus::Pending,
                DesiredStatus::Running
            )
        );
    }

    #[test]
    fn placement_rows_are_the_clusters_unstopped_ec2_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        s.ensure_cluster("other", "arn:o", 1).unwrap();
        let row = |id: &str, cluster: &str, launch: &str, last: LastStatus| TaskRow {
            id: id.into(),
            arn: format!("arn:{id}"),
            cluster: cluster.into(),
            family: format!("fam-{id}"),
            launch_type: launch.into(),
            group: Some(format!("group-{id}")),
            last_status: last,
            desired_status: DesiredStatus::Running,
            created_at: 1,
            version: 1,
            definition: std::sync::Arc::new(TaskDefinition {
                memory: Some(crate::taskdef::model::SizeValue("512".into())),
                ..Default::default()
            }),
            ..Default::default()
        };
        for t in [
            row("a", "default", "EC2", LastStatus::Running),
            row("b", "default", "EC2", LastStatus::Pending),
            row("c", "default", "FARGATE", LastStatus::Running),
            row("d", "other", "EC2", LastStatus::Running),
            row("e", "default", "EC2", LastStatus::Stopped),
        ] {
            s.insert_task(&t, &[]).unwrap();
        }
        let mut got = s.placement_rows("default").unwrap();
        got.sort_by(|x, y| x.family.cmp(&y.family));
        let ids: Vec<_> = got.iter().map(|r| r.family.as_str()).collect();
        assert_eq!(ids, ["fam-a", "fam-b"]);
        assert_eq!(got[1].last_status, LastStatus::Pending);
        assert_eq!(got[0].group.as_deref(), Some("group-a"));
        assert_eq!(got[0].launch_type, "EC2");
        let memory = got[0].definition.memory.as_ref().map(|m| m.as_str());
        assert_eq!(memory, Some("512"));
        // One definition text, decoded once for both rows.
        assert!(std::rc::Rc::ptr_eq(&got[0].definition, &got[1].definition));
        let mut other = row("f", "default", "EC2", LastStatus::Running);
        std::sync::Arc::make_mut(&mut other.definition).memory =
            Some(crate::taskdef::model::SizeValue("1024".into()));
        s.insert_task(&other, &[]).unwrap();
        let got = s.placement_rows("default").unwrap();
        let f = got.iter().find(|r| r.family == "fam-f").unwrap();
        let a = got.iter().find(|r| r.family == "fam-a").unwrap();
        assert!(!std::rc::Rc::ptr_eq(&f.definition, &a.definition));
        assert_eq!(
            f.definition.memory.as_ref().map(|m| m.as_str()),
            Some("1024")
        );
    }

    #[test]
    fn insert_save_read_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        s.ensure_cluster("default", "arn:c", 2).unwrap();
        let mut t = TaskRow {
            id: "abc".into(),
            arn: "arn:t".into(),
            cluster: "default".into(),
            family: "hello".into(),
            last_status: LastStatus::Provisioning,
            desired_status: DesiredStatus::Running,
            created_at: 5,
            version: 1,
            ..Default::default()
        };
        let mut c = ContainerRow {
            task_id: "abc".into(),
            name: "app".into(),
            image: "busybox".into(),
            essential: true,
            last_status: LastStatus::Pending,
            ..Default::default()
        };
        s.insert_task(&t, std::slice::from_ref(&c)).unwrap();
        t.last_status = LastStatus::Stopped;
        t.stop_code = Some(StopCode::UserInitiated);
        s.save_task(&t).unwrap();
        c.exit_code = Some(3);
        s.save_container(&c).unwrap();
        let (got, cs) = s.task("abc").unwrap().unwrap();
        assert_eq!(got.last_status, LastStatus::Stopped);
        assert_eq!(got.version, 2);
        assert_eq!(cs[0].exit_code, Some(3));
        assert!(s.unstopped_tasks().unwrap().is_empty());
        t.stopped_at = Some(100);
        s.save_task(&t).unwrap();
        assert!(s.prune_stopped_tasks(100).unwrap().is_empty());
        assert_eq!(s.prune_stopped_tasks(101).unwrap(), ["abc"]);
        assert!(s.task("abc").unwrap().is_none());
        s.insert_task(&t, std::slice::from_ref(&c)).unwrap();
        let f = TaskFilter {
            family: Some("other".into()),
            ..Default::default()
        };
        assert!(s.list_tasks(&f).unwrap().is_empty());
        assert_eq!(s.list_tasks(&TaskFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn liveness_reads_only_unstopped_tasks_without_their_definitions() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        for (id, status) in [("run", LastStatus::Running), ("gone", LastStatus::Stopped)] {
            let t = TaskRow {
                id: id.into(),
                arn: format!("arn:{id}"),
                cluster: "default".into(),
                family: "hello".into(),
                last_status: status,
                supervisor_pid: Some(42),
                supervisor_start_time: Some(7),
                created_at: 5,
                version: 1,
                ..Default::default()
            };
            s.insert_task(&t, &[]).unwrap();
        }
        let want = Liveness {
            id: "run".into(),
            supervisor_pid: Some(42),
            supervisor_start_time: Some(7),
            created_at: 5,
        };
        assert_eq!(s.unstopped_liveness().unwrap(), vec![want]);
        // From the index alone: the rows (with their definitions) are not read.
        let plan: String = s
            .conn
            .query_row(&format!("EXPLAIN QUERY PLAN {LIVENESS_SQL}"), [], |r| {
                r.get(3)
            })
            .unwrap();
        assert!(plan.contains("COVERING INDEX tasks_liveness"), "{plan}");
        assert_eq!(
            s.unstopped_ids().unwrap(),
            std::collections::HashSet::from(["run".to_string()])
        );
        // A definition that no longer decodes does not stop the liveness walk (it is not
        // read); the full rows still report it.
        s.conn
            .execute("UPDATE tasks SET definition = '{' WHERE id = 'run'", [])
            .unwrap();
        assert_eq!(s.unstopped_liveness().unwrap().len(), 1);
        assert!(s.unstopped_tasks().is_err());
    }

    fn bad_row(e: StoreError) -> (&'static str, &'static str, String) {
        match e {
            StoreError::BadRow(b) => (b.table, b.column, b.id),
            other => panic!("expected BadRow, got {other:?}"),
        }
    }

    #[test]
    fn a_row_that_does_not_decode_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        let t = TaskRow {
            id: "abc".into(),
            arn: "arn:t".into(),
            cluster: "default".into(),
            ..Default::default()
        };
        let c = ContainerRow {
            task_id: "abc".into(),
            name: "app".into(),
            ..Default::default()
        };
        s.insert_task(&t, std::slice::from_ref(&c)).unwrap();
        let raw = |s: &Store, sql: &str| s.conn.execute(sql, []).unwrap();

        // An unknown state, written as a newer (or broken) minifargate might.
        raw(
            &s,
            "UPDATE tasks SET last_status = 'HIBERNATING' WHERE id = 'abc'",
        );
        let e = s.task("abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to decode tasks.last_status of row abc in the state database"
        );
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            r#""HIBERNATING" is not a known lastStatus"#
        );
        assert_eq!(
            bad_row(s.unstopped_tasks().unwrap_err()),
            ("tasks", "last_status", "abc".into())
        );
        raw(
            &s,
            "UPDATE tasks SET last_status = 'RUNNING' WHERE id = 'abc'",
        );

        // Broken JSON in a JSON column.
        raw(&s, "UPDATE tasks SET warnings = '[\"a\",' WHERE id = 'abc'");
        assert_eq!(
            bad_row(s.list_tasks(&TaskFilter::default()).unwrap_err()),
            ("tasks", "warnings", "abc".into())
        );
        raw(&s, "UPDATE tasks SET warnings = '[]' WHERE id = 'abc'");
        raw(
            &s,
            "UPDATE tasks SET definition = '{\"family\": 7}' WHERE id = 'abc'",
        );
        assert_eq!(
            bad_row(s.task("abc").unwrap_err()),
            ("tasks", "definition", "abc".into())
        );
        raw(&s, "UPDATE tasks SET definition = '{}' WHERE id = 'abc'");
        assert!(s.task("abc").unwrap().is_some());

        // A container's state.
        raw(
            &s,
            "UPDATE task_containers SET health_status = 'SICK' WHERE task_id = 'abc'",
        );
        assert_eq!(
            bad_row(s.task("abc").unwrap_err()),
            ("task_containers", "health_status", "abc/app".into())
        );
    }

    #[test]
    fn the_first_pin_of_a_scope_wins_and_goes_with_its_last_task() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.ensure_cluster("default", "arn:c", 1).unwrap();
        assert_eq!(s.image_pin("run/1", "app").unwrap(), None);
        assert_eq!(
            s.pin_image("run/1", "app", "sha256:aa").unwrap(),
            "sha256:aa"
        );
        // A later task of the scope that resolved the tag elsewhere gets the first digest.
        assert_eq!(
            s.pin_image("run/1", "app", "sha256:bb").unwrap(),
            "sha256:aa"
        );
        assert_eq!(
            s.pin_image("run/1", "side", "sha256:bb").unwrap(),
            "sha256:bb"
        );
        assert_eq!(
            s.pin_image("run/2", "app", "sha256:bb").unwrap(),
            "sha256:bb"
        );
        let task = |id: &str, scope: &str, stopped_at| TaskRow {
            id: id.into(),
            arn: format!("arn:{id}"),
            cluster: "default".into(),
            last_status: LastStatus::Stopped,
            desired_status: DesiredStatus::Stopped,
            stopped_at: Some(stopped_at),
            image_scope: Some(scope.into()),
            version: 1,
            ..Default::default()
        };
        s.insert_task(&task("t1", "run/1", 10), &[]).unwrap();
        s.insert_task(&task("t2", "run/1", 30), &[]).unwrap();
        s.insert_task(&task("t3", "run/2", 10), &[]).unwrap();
        assert_eq!(
            s.task("t1").unwrap().unwrap().0.image_scope.as_deref(),
            Some("run/1")
        );
        s.prune_stopped_tasks(20).unwrap();
        // run/1 keeps a task (t2), run/2 has none left.
        assert_eq!(
            s.image_pin("run/1", "app").unwrap().as_deref(),
            Some("sha256:aa")
        );
        assert_eq!(s.image_pin("run/2", "app").unwrap(), None);
    }
}
