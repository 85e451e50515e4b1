//! The schema of `state.db`, as an append-only list of migrations. Later issues add tasks,
//! containers, clusters and services by appending a migration; a shipped one never changes.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[Migration {
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
}];

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
