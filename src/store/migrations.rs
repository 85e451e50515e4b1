//! The schema of `state.db`, as an append-only list of migrations. Later issues add tasks,
//! containers, clusters and services by appending a migration; a shipped one never changes.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "task definition families and revisions",
        sql: r#"
-- One row per family ever registered. last_revision only grows, so a revision number is never
-- reused, even after every revision of the family was deregistered.
CREATE TABLE task_definition_families (
    family        TEXT PRIMARY KEY NOT NULL,
    last_revision INTEGER NOT NULL CHECK (last_revision >= 1)
) STRICT;

-- One row per registered revision. `definition` is the registered task definition as JSON
-- (ECS's TaskDefinition shape, with ARN and revision); status and timestamps live in columns
-- because deregistering changes them.
CREATE TABLE task_definitions (
    family             TEXT NOT NULL REFERENCES task_definition_families (family),
    revision           INTEGER NOT NULL CHECK (revision >= 1),
    arn                TEXT NOT NULL UNIQUE,
    status             TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE', 'DELETE_IN_PROGRESS')),
    definition         TEXT NOT NULL,
    tags               TEXT NOT NULL DEFAULT '[]',
    registered_at_ms   INTEGER NOT NULL,
    deregistered_at_ms INTEGER,
    PRIMARY KEY (family, revision)
) STRICT;

CREATE INDEX task_definitions_by_status ON task_definitions (status, family, revision);
"#,
    },
    Migration {
        version: 2,
        name: "clusters, tasks and their containers",
        sql: r#"
CREATE TABLE clusters (
    name          TEXT PRIMARY KEY NOT NULL,
    arn           TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL DEFAULT 'ACTIVE',
    created_at_ms INTEGER NOT NULL
) STRICT;

-- One row per task run. `definition` is the task definition the task runs (JSON, as
-- resolved at run time); `overrides` the RunTask overrides. Timestamps are epoch ms.
CREATE TABLE tasks (
    id                         TEXT PRIMARY KEY NOT NULL,
    arn                        TEXT NOT NULL UNIQUE,
    cluster                    TEXT NOT NULL REFERENCES clusters (name),
    task_definition_arn        TEXT NOT NULL,
    family                     TEXT NOT NULL,
    definition                 TEXT NOT NULL,
    overrides                  TEXT NOT NULL DEFAULT '{}',
    launch_type                TEXT NOT NULL,
    started_by                 TEXT,
    grp                        TEXT,
    cpu                        TEXT,
    memory                     TEXT,
    last_status                TEXT NOT NULL,
    desired_status             TEXT NOT NULL,
    stop_code                  TEXT,
    stopped_reason             TEXT,
    warnings                   TEXT NOT NULL DEFAULT '[]',
    supervisor_pid             INTEGER,
    supervisor_start_time      INTEGER,
    created_at_ms              INTEGER NOT NULL,
    pull_started_at_ms         INTEGER,
    pull_stopped_at_ms         INTEGER,
    started_at_ms              INTEGER,
    stopping_at_ms             INTEGER,
    execution_stopped_at_ms    INTEGER,
    stopped_at_ms              INTEGER,
    version                    INTEGER NOT NULL DEFAULT 1
) STRICT;

CREATE INDEX tasks_by_cluster ON tasks (cluster, last_status);

CREATE TABLE task_containers (
    task_id       TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    image         TEXT NOT NULL,
    image_digest  TEXT,
    runtime_id    TEXT,
    arn           TEXT NOT NULL,
    essential     INTEGER NOT NULL,
    last_status   TEXT NOT NULL,
    exit_code     INTEGER,
    reason        TEXT,
    health_status TEXT,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    cpu           TEXT,
    memory        TEXT,
    memory_reservation TEXT,
    PRIMARY KEY (task_id, name)
) STRICT;
"#,
    },
    Migration {
        version: 3,
        name: "task tags, execute command, launch phases",
        sql: r#"
-- RunTask `tags` ([{"key","value"}] JSON) and `enableExecuteCommand`.
ALTER TABLE tasks ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tasks ADD COLUMN enable_execute_command INTEGER NOT NULL DEFAULT 0;

-- How long each launch phase took (run-task --timeline): one row per task phase
-- (container '') or container phase. Microseconds since the epoch.
CREATE TABLE task_phases (
    task_id       TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    container     TEXT NOT NULL,
    phase         TEXT NOT NULL,
    started_at_us INTEGER NOT NULL,
    ended_at_us   INTEGER NOT NULL,
    PRIMARY KEY (task_id, container, phase)
) STRICT;
"#,
    },
    Migration {
        version: 4,
        name: "task networks",
        sql: r#"
-- One row per task: its network mode, the bridge it is on (so a dead task's network can be
-- found again), the awsvpc ENI attachment (id and status) and what the network step made.
-- `configuration` is RunTask's awsvpcConfiguration (subnets, securityGroups) as JSON;
-- `network` the netns crate's TaskNetwork as JSON once set up.
CREATE TABLE task_networks (
    task_id           TEXT PRIMARY KEY NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    mode              TEXT NOT NULL,
    bridge            TEXT,
    subnet            TEXT,
    attachment_id     TEXT NOT NULL,
    attachment_status TEXT NOT NULL,
    configuration     TEXT NOT NULL DEFAULT '{}',
    network           TEXT
) STRICT;
"#,
    },
    Migration {
        version: 5,
        name: "services, their deployments and events; cluster tags",
        sql: r#"
-- TagResource on a cluster ([{"key","value"}] JSON, like tasks.tags).
ALTER TABLE clusters ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

-- One row per service name in a cluster. status: ACTIVE, DRAINING (DeleteService, tasks
-- still stopping), INACTIVE (deleted; CreateService may reuse the name). `spec` is the
-- rest of CreateService/UpdateService as JSON (launchType, networkConfiguration,
-- deploymentConfiguration, enableExecuteCommand, propagateTags …).
CREATE TABLE services (
    cluster             TEXT NOT NULL REFERENCES clusters (name),
    name                TEXT NOT NULL,
    arn                 TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('ACTIVE', 'DRAINING', 'INACTIVE')),
    task_definition_arn TEXT NOT NULL,
    desired_count       INTEGER NOT NULL CHECK (desired_count >= 0),
    spec                TEXT NOT NULL DEFAULT '{}',
    tags                TEXT NOT NULL DEFAULT '[]',
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (cluster, name)
) STRICT;

-- A service's deployments (`ecs-svc/<19 digits>`, the tasks' startedBy): one PRIMARY,
-- older ones ACTIVE while they still have tasks, INACTIVE after.
CREATE TABLE service_deployments (
    id                   TEXT PRIMARY KEY NOT NULL,
    cluster              TEXT NOT NULL,
    service              TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('PRIMARY', 'ACTIVE', 'INACTIVE')),
    task_definition_arn  TEXT NOT NULL,
    desired_count        INTEGER NOT NULL,
    failed_tasks         INTEGER NOT NULL DEFAULT 0,
    rollout_state        TEXT NOT NULL,
    rollout_state_reason TEXT NOT NULL DEFAULT '',
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    FOREIGN KEY (cluster, service) REFERENCES services (cluster, name) ON DELETE CASCADE
) STRICT;

CREATE INDEX service_deployments_by_service ON service_deployments (cluster, service, status);

-- The scheduler's messages ("(service web) has started 2 tasks: …"), newest kept.
CREATE TABLE service_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    cluster       TEXT NOT NULL,
    service       TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    message       TEXT NOT NULL,
    FOREIGN KEY (cluster, service) REFERENCES services (cluster, name) ON DELETE CASCADE
) STRICT;

CREATE INDEX service_events_by_service ON service_events (cluster, service, seq);
CREATE INDEX tasks_by_group ON tasks (cluster, grp, last_status);
"#,
    },
    Migration {
        version: 6,
        name: "indexes for the per-command supervisor check and the stopped-task pruning",
        sql: r#"
-- Every run-task, describe and list checks the tasks that are not STOPPED and prunes the
-- STOPPED ones past their retention. Without these both scanned the whole table, whose
-- rows carry the task definition (overflow pages): with a few hundred stopped tasks kept
-- for the hour, ~160 page reads per command.
CREATE INDEX tasks_not_stopped ON tasks (id) WHERE last_status <> 'STOPPED';
CREATE INDEX tasks_stopped_by_time ON tasks (stopped_at_ms) WHERE last_status = 'STOPPED';
"#,
    },
    Migration {
        version: 7,
        name: "image digests pinned per deployment (versionConsistency)",
        sql: r#"
-- The tasks that share their image digests: a service deployment's id, or `run/<id>` for
-- the tasks of one RunTask call. NULL for tasks written before this migration.
ALTER TABLE tasks ADD COLUMN image_scope TEXT;

-- The digest the first task of a scope resolved each container's image tag to; every
-- later task of the scope runs that digest (ECS's container image resolution). Pruned
-- with the last task of the scope unless it is a live deployment's.
CREATE TABLE image_pins (
    scope         TEXT NOT NULL,
    container     TEXT NOT NULL,
    digest        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, container)
) STRICT;
"#,
    },
    Migration {
        version: 8,
        name: "RunTask launch record, task protection, idempotency tokens, cluster settings, account settings",
        sql: r#"
-- What RunTask/StartTask recorded besides the task's own columns (JSON: capacityProviderName,
-- platformVersion, referenceId, placementConstraints, placementStrategy, clientToken).
ALTER TABLE tasks ADD COLUMN launch TEXT NOT NULL DEFAULT '{}';
-- UpdateTaskProtection: the task is protected from service scale-in and deployments until
-- this time (epoch ms); NULL when not protected.
ALTER TABLE tasks ADD COLUMN protected_until_ms INTEGER;

-- RunTask clientToken idempotency: per cluster, 24 hours (ECS_Idempotency.html). `request`
-- is the request without the token (JSON); `task_arns` the tasks it started (JSON).
CREATE TABLE run_tokens (
    cluster       TEXT NOT NULL,
    token         TEXT NOT NULL,
    request       TEXT NOT NULL,
    task_arns     TEXT NOT NULL DEFAULT '[]',
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (cluster, token)
) STRICT;

-- UpdateCluster/UpdateClusterSettings/PutClusterCapacityProviders (JSON lists; configuration
-- and serviceConnectDefaults as given).
ALTER TABLE clusters ADD COLUMN settings TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clusters ADD COLUMN capacity_providers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clusters ADD COLUMN default_capacity_provider_strategy TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clusters ADD COLUMN configuration TEXT NOT NULL DEFAULT '{}';

-- PutAccountSetting (principal = the caller's ARN) and PutAccountSettingDefault (principal '').
CREATE TABLE account_settings (
    principal     TEXT NOT NULL,
    name          TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (principal, name)
) STRICT;
"#,
    },
    Migration {
        version: 9,
        name: "a covering index for the per-command supervisor check",
        sql: r#"
-- Every command walks the unstopped tasks' supervisors (reconcile). tasks_not_stopped finds
-- them, but their pid, start time and creation time sit after the task definition in the
-- row, on its overflow pages: a few page reads per running task and command (issue 26,
-- ~0.7 ms at 250 tasks, growing with them). This index answers the walk on its own
-- (last_status in it too: SQLite covers a query only with every column it names).
CREATE INDEX tasks_liveness
    ON tasks (id, supervisor_pid, supervisor_start_time, created_at_ms, last_status)
    WHERE last_status <> 'STOPPED';
"#,
    },
    Migration {
        version: 10,
        name: "per-task user namespace id ranges",
        sql: r#"
-- A task in its own user namespace holds slot N of the configured host id range: ids
-- start + N * 65536 .. + 65536 (src/supervisor/isolation/userns.rs). A slot whose task is STOPPED (or
-- gone) is free again; claiming reclaims those first, so a dead supervisor's slot is
-- never lost and two running tasks never share ids.
CREATE TABLE userns_slots (
    slot     INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL UNIQUE,
    start    INTEGER NOT NULL,
    count    INTEGER NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 11,
        name: "service deployments: the service deployment API's record of each deployment",
        sql: r#"
-- ListServiceDeployments … DescribeServiceRevisions and the circuit breaker: the service
-- deployment's id, status, reason, times, source revisions, the service's settings when it
-- started and its rollback, as JSON (ServiceDeploymentRecord). '{}' for older rows.
ALTER TABLE service_deployments ADD COLUMN service_deployment TEXT NOT NULL DEFAULT '{}';
"#,
    },
    Migration {
        version: 12,
        name: "elastic load balancing resources",
        sql: r#"
-- ELBv2's load balancers, target groups (with their registered targets) and listeners, one
-- row each, the resource as JSON (src/elb/model.rs). `serve` keeps them in memory and
-- writes each change through; target health is not stored (health checks find it again).
CREATE TABLE elb_resources (
    arn   TEXT PRIMARY KEY NOT NULL,
    kind  TEXT NOT NULL CHECK (kind IN ('loadbalancer', 'targetgroup', 'listener')),
    doc   TEXT NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 13,
        name: "elastic load balancing listener rules",
        sql: r#"
-- ELBv2's listener rules are rows of elb_resources too (kind 'rule'): SQLite cannot
-- change a CHECK, so the table is made again with the new kind and its rows copied.
CREATE TABLE elb_resources_new (
    arn   TEXT PRIMARY KEY NOT NULL,
    kind  TEXT NOT NULL CHECK (kind IN ('loadbalancer', 'targetgroup', 'listener', 'rule')),
    doc   TEXT NOT NULL
) STRICT;
INSERT INTO elb_resources_new (arn, kind, doc) SELECT arn, kind, doc FROM elb_resources;
DROP TABLE elb_resources;
ALTER TABLE elb_resources_new RENAME TO elb_resources;
"#,
    },
    Migration {
        version: 14,
        name: "cloud map namespaces, services and instances",
        sql: r#"
-- AWS Cloud Map's namespaces, services, instances and operations, one row each, the
-- resource as JSON (src/servicediscovery/model.rs); an instance's id is
-- '<service id>/<instance id>'. `serve` keeps them in memory and writes each change through.
CREATE TABLE servicediscovery_resources (
    id    TEXT PRIMARY KEY NOT NULL,
    kind  TEXT NOT NULL CHECK (kind IN ('namespace', 'service', 'instance', 'operation')),
    doc   TEXT NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 15,
        name: "elastic load balancing target health history",
        sql: r#"
-- Each load balancer target's changes of health, the console's history of them
-- (src/elb/history.rs): one row per change of the state or reason DescribeTargetHealth
-- reports, 'deregistered' once the target is no longer listed. Written by `serve` alone,
-- on each change, pruned in the same transaction to the last changes of each target and
-- to the targets no longer listed that are kept. Never shared between the serves of a
-- cluster (each records what it sees). seq orders the changes; at_ms is epoch ms.
CREATE TABLE elb_target_health_history (
    seq          INTEGER PRIMARY KEY,
    target_group TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    port         INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT
) STRICT;

CREATE INDEX elb_target_health_history_by_target
    ON elb_target_health_history (target_group, target_id, port, seq);
"#,
    },
    Migration {
        version: 16,
        name: "application auto scaling and cloudwatch alarms of a cluster",
        sql: r#"
-- `serve --cluster`: Application Auto Scaling's state and CloudWatch's alarms (with their
-- state and history), which one box keeps in JSON files, as items of JSON
-- (src/store/json_state.rs): `owner` is the service ('autoscaling' or 'alarms'), `item`
-- one entry of its state (a target, a policy, an alarm, an alarm's history...). Shared
-- between the serves through etcd (src/store/replica.rs).
CREATE TABLE control_docs (
    owner TEXT NOT NULL CHECK (owner IN ('autoscaling', 'alarms')),
    item  TEXT NOT NULL,
    doc   TEXT NOT NULL,
    PRIMARY KEY (owner, item)
) STRICT;
"#,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }
}
