//! `minifargate logs --etcd ENDPOINTS TASK`: the output of a task on another box of a
//! cluster (docs/cluster.md "Logs across boxes"). The task's record in etcd names its box;
//! that box's agent answers its signed logs view (the console's, `tail=all`), and with
//! `--follow` it is asked again, from the last line's time, until the task is STOPPED.
//! Lines print as `logs` prints a local task's.

use super::tasks::LogsArgs;
use crate::cluster::etcd::Etcd;
use crate::cluster::remote::console_view;
use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How often `--follow` asks the box again.
const POLL: Duration = Duration::from_millis(500);
/// How long `--follow` waits for a task placed on a box to be made there.
const PLACED_WAIT: Duration = Duration::from_secs(30);

/// One line of the view: (time, container, stream, text).
type Line = (String, String, String, String);

fn lines_of(body: &Value) -> Vec<Line> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    body["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                s(&l["time"]),
                s(&l["container"]),
                s(&l["stream"]),
                s(&l["log"]),
            )
        })
        .collect()
}

pub fn logs(a: &LogsArgs, endpoints: &str) -> anyhow::Result<ExitCode> {
    let etcd = Etcd::new(endpoints, &a.etcd_tls.tls())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // RFC 3339 with nanoseconds in UTC, as the lines' times: strings that order as the
    // times do.
    let given = a
        .since
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let mut since = given.clone();
    // The lines already printed at `since` (the view answers them again).
    let mut at_since: HashSet<Line> = HashSet::new();
    let mut first = true;
    let mut waited = Duration::ZERO;
    let mut out = std::io::stdout().lock();
    loop {
        let mut query = vec![format!(
            "tail={}",
            match (first, a.tail) {
                (true, Some(n)) => n.to_string(),
                _ => "all".into(),
            }
        )];
        if let Some(c) = &a.container {
            query.push(format!("container={c}"));
        }
        if let Some(s) = &since {
            query.push(format!("since={s}"));
        }
        let (status, body) = rt.block_on(console_view(&etcd, "logs", &a.task, &query.join("&")))?;
        // Placed but not yet made on its box (RunTask answers first): `--follow` waits.
        if status == 404 && a.follow && first && waited < PLACED_WAIT {
            std::thread::sleep(POLL);
            waited += POLL;
            continue;
        }
        if status != 200 {
            bail!(
                "task {}: its box answered {status}: {}",
                a.task,
                body["message"].as_str().unwrap_or("no message")
            );
        }
        let names: Vec<&str> = body["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|n| a.container.as_deref().is_none_or(|c| c == *n))
            .collect();
        if let Some(c) = &a.container
            && names.is_empty()
        {
            bail!("task {} has no container {c:?}", a.task);
        }
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let lines = lines_of(&body);
        for l in &lines {
            // `--since` is "newer than"; a later ask's first lines may be ones printed.
            if (first && given.as_deref() == Some(l.0.as_str())) || at_since.contains(l) {
                continue;
            }
            let prefix = if names.len() > 1 {
                format!("{:<width$} | ", l.1)
            } else {
                String::new()
            };
            let stamp = if a.timestamps {
                format!("{} ", l.0)
            } else {
                String::new()
            };
            let _ = writeln!(out, "{prefix}{stamp}{}", l.3);
        }
        out.flush().ok();
        if let Some(last) = lines.last().map(|l| l.0.clone()) {
            if since.as_deref() != Some(last.as_str()) {
                at_since.clear();
            }
            at_since.extend(lines.iter().filter(|l| l.0 == last).cloned());
            since = Some(last);
        }
        first = false;
        if !a.follow || body["lastStatus"] == "STOPPED" {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(POLL);
    }
}
