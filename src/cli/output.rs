//! Human tables (borderless, like `docker ps`) and the launch timeline of
//! `run-task --timeline` / `timeline`.

use crate::store::{ContainerRow, PhaseRow, TaskRow};
use comfy_table::{CellAlignment, ContentArrangement, Table, TableComponent, presets};

/// A borderless table with the given header, like `docker ps`.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .remove_style(TableComponent::LeftBorder)
        .remove_style(TableComponent::RightBorder)
        .remove_style(TableComponent::VerticalLines)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_string()));
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t
}

/// `12.3 ms` under a second, `1.23 s` above.
pub fn duration_us(us: i64) -> String {
    let ms = us as f64 / 1000.0;
    if ms.abs() < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// The launch profile of one task: per container how long each phase took (network is
/// the task's, shared by its containers), when its process was up (from createdAt), and
/// the task's milestones. The phases come from the supervisor (`task_phases`).
pub fn timeline(t: &TaskRow, containers: &[ContainerRow], phases: &[PhaseRow]) -> String {
    let phase = |container: &str, name: &str| {
        phases
            .iter()
            .find(|p| p.container == container && p.phase == name)
            .map(|p| p.ended_at_us - p.started_at_us)
    };
    let fmt = |v: Option<i64>| v.map_or("-".to_string(), duration_us);
    let created_us = t.created_at * 1000;
    let since_created = |ms: Option<i64>| ms.map(|ms| ms * 1000 - created_us);
    let mut tbl = table(&[
        "CONTAINER",
        "PULL",
        "NETWORK",
        "ROOTFS",
        "CREATE",
        "START",
        "UP AT",
        "FIRST HEALTHY",
        "RAN",
        "STOP",
    ]);
    // The network's first half runs before the pull; its configuration (links, addresses,
    // routes, ports) beside the pull, rootfs and create: the column is their sum, the
    // line under the table says when the configuration ran.
    let config = phases
        .iter()
        .find(|p| p.container.is_empty() && p.phase == "network-config");
    let network = match (phase("", "network"), config) {
        (Some(a), Some(c)) => Some(a + c.ended_at_us - c.started_at_us),
        (a, c) => a.or(c.map(|c| c.ended_at_us - c.started_at_us)),
    };
    for c in containers {
        let ran = match (c.started_at, c.finished_at.or(t.execution_stopped_at)) {
            (Some(a), Some(b)) => Some((b - a) * 1000),
            _ => None,
        };
        tbl.add_row(vec![
            c.name.clone(),
            fmt(phase(&c.name, "pull")),
            fmt(network),
            fmt(phase(&c.name, "rootfs")),
            fmt(phase(&c.name, "create")),
            fmt(phase(&c.name, "start")),
            fmt(since_created(c.started_at)),
            fmt(phase(&c.name, "healthy")),
            fmt(ran),
            fmt(phase(&c.name, "stop")),
        ]);
    }
    for i in 1..10 {
        if let Some(col) = tbl.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = format!("Launch timeline of task {}\n", t.id);
    for line in tbl.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if let Some(c) = config {
        out.push_str(&format!(
            "network configuration: {}, beside the pull, rootfs and create (from {} to {} \
             after createdAt)\n",
            duration_us(c.ended_at_us - c.started_at_us),
            duration_us(c.started_at_us - created_us),
            duration_us(c.ended_at_us - created_us)
        ));
    }
    let mut milestones = Vec::new();
    if let Some(v) = since_created(t.started_at) {
        milestones.push(format!("RUNNING at {}", duration_us(v)));
    }
    if let Some(v) = since_created(t.stopping_at) {
        milestones.push(format!("stopping at {}", duration_us(v)));
    }
    if let Some(v) = phase("", "teardown") {
        milestones.push(format!("teardown {}", duration_us(v)));
    }
    if let Some(v) = since_created(t.stopped_at) {
        milestones.push(format!("STOPPED at {}", duration_us(v)));
    }
    if !milestones.is_empty() {
        out.push_str(&format!(
            "task (from createdAt): {}\n",
            milestones.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_us(1234), "1.2 ms");
        assert_eq!(duration_us(999_900), "999.9 ms");
        assert_eq!(duration_us(1_234_000), "1.23 s");
    }

    #[test]
    fn timeline_lists_each_container_phase_and_the_task_milestones() {
        let t = TaskRow {
            id: "abc".into(),
            created_at: 1_000,
            started_at: Some(1_050),
            stopping_at: Some(2_000),
            stopped_at: Some(2_100),
            execution_stopped_at: Some(2_090),
            ..Default::default()
        };
        let c = ContainerRow {
            name: "app".into(),
            started_at: Some(1_040),
            finished_at: Some(1_990),
            ..Default::default()
        };
        let p = |container: &str, phase: &str, a: i64, b: i64| PhaseRow {
            container: container.into(),
            phase: phase.into(),
            started_at_us: a,
            ended_at_us: b,
        };
        let phases = [
            p("", "network", 1_001_000, 1_001_500),
            p("app", "pull", 1_002_000, 1_004_000),
            p("app", "create", 1_010_000, 1_022_000),
            p("", "teardown", 2_000_000, 2_090_000),
        ];
        let out = timeline(&t, &[c], &phases);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Launch timeline of task abc");
        assert!(lines[1].split_whitespace().eq([
            "CONTAINER",
            "PULL",
            "NETWORK",
            "ROOTFS",
            "CREATE",
            "START",
            "UP",
            "AT",
            "FIRST",
            "HEALTHY",
            "RAN",
            "STOP"
        ]));
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "app", "2.0", "ms", "0.5", "ms", "-", "12.0", "ms", "-", "40.0", "ms", "-",
                "950.0", "ms", "-"
            ]
        );
        assert_eq!(
            lines[3],
            "task (from createdAt): RUNNING at 50.0 ms, stopping at 1.00 s, teardown 90.0 ms, \
             STOPPED at 1.10 s"
        );

        // The network configured beside the pull and create: NETWORK is both halves, and
        // a line says when the second one ran.
        let phases = [
            p("", "network", 1_001_000, 1_001_500),
            p("", "network-config", 1_001_600, 1_004_100),
            p("app", "pull", 1_001_600, 1_003_600),
            p("app", "create", 1_004_000, 1_013_000),
        ];
        let c = ContainerRow {
            name: "app".into(),
            ..Default::default()
        };
        let out = timeline(&t, &[c], &phases);
        let lines: Vec<&str> = out.lines().collect();
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&row[..5], ["app", "2.0", "ms", "3.0", "ms"], "{out}");
        assert_eq!(
            lines[3],
            "network configuration: 2.5 ms, beside the pull, rootfs and create (from 1.6 ms to \
             4.1 ms after createdAt)"
        );
    }
}
