//! A task's output as `logs` and the console show it: each container's lines from where
//! they are kept (an awslogs container's events from the local CloudWatch Logs store, what
//! the Logs API serves with multi-line events joined; others from their json-file, every
//! rotated file kept), merged by time.

use crate::ecs::Ecs;
use crate::task::TaskPaths;
use crate::taskdef::model::TaskDefinition;
use runtime::{LogEntry, LogFollower};
use std::path::PathBuf;

/// Where one container's output is read, and how far it has been read.
enum Source {
    File {
        path: PathBuf,
        follower: Option<LogFollower>,
    },
    Events {
        group: String,
        stream: String,
        /// GetLogEvents' forward token, once the first read is done.
        token: Option<String>,
    },
}

/// One container's output, read first with [`ContainerLog::read`] and then, for what was
/// written since, with [`ContainerLog::more`].
pub struct ContainerLog {
    pub name: String,
    source: Source,
}

impl ContainerLog {
    /// Container `name` of task `task_id` (at `paths`) run from `def`: its awslogs stream
    /// when its logConfiguration sends it there, else its json-file.
    pub fn new(
        def: Option<&TaskDefinition>,
        paths: &TaskPaths,
        task_id: &str,
        name: &str,
    ) -> ContainerLog {
        let target = def.and_then(|d| {
            let defs = d.container_definitions.as_ref()?;
            let idx = defs.iter().position(|c| c.name_str() == name)?;
            crate::supervisor::logs::awslogs::target(&defs[idx], task_id, idx)
        });
        let source = match target {
            Some((group, stream)) => Source::Events {
                group,
                stream,
                token: None,
            },
            None => Source::File {
                path: paths.log(name),
                follower: None,
            },
        };
        ContainerLog {
            name: name.to_string(),
            source,
        }
    }

    /// What was written so far: the last `tail` lines, or everything. A json-file not
    /// written yet reads as no lines.
    pub fn read(&mut self, ecs: &Ecs, tail: Option<usize>) -> anyhow::Result<Vec<LogEntry>> {
        match &mut self.source {
            Source::File { path, follower } => {
                if !path.exists() {
                    return Ok(Vec::new());
                }
                // A tail reads the files from their end (a rotated log of 50 MB answers at
                // once); otherwise every kept file, oldest first.
                let (lines, lf) = match tail {
                    Some(n) => LogFollower::open_tail(path, n)?,
                    None => {
                        let mut lf = LogFollower::open(path)?;
                        (lf.drain()?, lf)
                    }
                };
                *follower = Some(lf);
                Ok(lines)
            }
            Source::Events {
                group,
                stream,
                token,
            } => crate::logs::stream_entries(ecs, group, stream, token, Some(tail)),
        }
    }

    /// What was written since the last read (a json-file that appeared since is read from
    /// its start).
    pub fn more(&mut self, ecs: &Ecs) -> anyhow::Result<Vec<LogEntry>> {
        match &mut self.source {
            Source::File { path, follower } => {
                if follower.is_none() && path.exists() {
                    *follower = LogFollower::open(path).ok();
                }
                let mut out = Vec::new();
                if let Some(f) = follower {
                    while let Ok(Some(e)) = f.next_entry() {
                        out.push(e);
                    }
                }
                Ok(out)
            }
            Source::Events {
                group,
                stream,
                token,
            } => crate::logs::stream_entries(ecs, group, stream, token, None),
        }
    }
}

/// The first read of every container in `logs` (see [`ContainerLog::read`]), merged by
/// time: each line with the index of its container in `logs`. RFC 3339 with nanoseconds in
/// UTC: the strings order as the times do; lines of one instant keep their containers'
/// order.
pub fn read_merged(
    logs: &mut [ContainerLog],
    ecs: &Ecs,
    tail: Option<usize>,
) -> anyhow::Result<Vec<(usize, LogEntry)>> {
    let mut entries = Vec::new();
    for (i, l) in logs.iter_mut().enumerate() {
        entries.extend(l.read(ecs, tail)?.into_iter().map(|e| (i, e)));
    }
    entries.sort_by(|a, b| a.1.time.cmp(&b.1.time));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ecs(dir: &std::path::Path) -> Ecs {
        Ecs {
            log_level: "warn".into(),
            ..Ecs::scratch(dir)
        }
    }

    /// Appends json-file lines `(time, text)` to container `name`'s log.
    fn write(paths: &TaskPaths, name: &str, lines: &[(&str, &str)]) {
        let path = paths.log(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for (time, text) in lines {
            let e = LogEntry {
                log: format!("{text}\n"),
                stream: "stdout".into(),
                time: time.to_string(),
            };
            writeln!(f, "{}", serde_json::to_string(&e).unwrap()).unwrap();
        }
    }

    fn texts(v: &[(usize, LogEntry)]) -> Vec<(usize, &str)> {
        v.iter().map(|(i, e)| (*i, e.log.trim_end())).collect()
    }

    #[test]
    fn json_files_merge_by_time_tail_and_then_follow() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = ecs(dir.path());
        let paths = TaskPaths::new(&ecs.root, &ecs.run_root, "t1");
        write(
            &paths,
            "web",
            &[
                ("2026-01-01T00:00:01.000000000Z", "web 1"),
                ("2026-01-01T00:00:03.000000000Z", "web 3"),
            ],
        );
        write(
            &paths,
            "side",
            &[
                ("2026-01-01T00:00:02.000000000Z", "side 2"),
                ("2026-01-01T00:00:04.000000000Z", "side 4"),
            ],
        );
        let open = || {
            ["web", "side", "never-started"]
                .iter()
                .map(|n| ContainerLog::new(None, &paths, "t1", n))
                .collect::<Vec<_>>()
        };
        let mut logs = open();
        let all = read_merged(&mut logs, &ecs, None).unwrap();
        assert_eq!(
            texts(&all),
            [(0, "web 1"), (1, "side 2"), (0, "web 3"), (1, "side 4")]
        );
        // What is written after the first read comes from `more`, once.
        write(
            &paths,
            "web",
            &[("2026-01-01T00:00:05.000000000Z", "web 5")],
        );
        write(
            &paths,
            "never-started",
            &[("2026-01-01T00:00:06.000000000Z", "late 6")],
        );
        let more: Vec<_> = logs.iter_mut().map(|l| l.more(&ecs).unwrap()).collect();
        assert_eq!(more[0].len(), 1);
        assert_eq!(more[0][0].log, "web 5\n");
        assert!(more[1].is_empty());
        assert_eq!(more[2][0].log, "late 6\n");
        assert!(logs[0].more(&ecs).unwrap().is_empty());
        // A tail: the last line of each container, still merged by time.
        let tail = read_merged(&mut open(), &ecs, Some(1)).unwrap();
        assert_eq!(texts(&tail), [(1, "side 4"), (0, "web 5"), (2, "late 6")]);
    }
}
