//! The CloudWatch Logs verbs, named and optioned as the AWS CLI's `aws logs …`:
//! `create-log-group`, `describe-log-groups`, `delete-log-group`, `put-retention-policy`
//! and `tail`. Each request goes to the core's operation table `serve`'s Logs API answers
//! (`crate::ecs::operations`), over the same store the tasks' awslogs drivers write, so a
//! verb cannot drift from the API. They are top-level verbs like the ECS ones
//! (`aws ecs create-cluster` is `minifargate create-cluster`); no ECS verb has these
//! names, and `minifargate logs TASK` (a task's output) keeps its meaning.

use super::GlobalOpts;
use super::aws::{self, OutputOpts, PageOpts, UsageError};
use crate::ecs::operations::{self as ops, Operation};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Calls CloudWatch Logs operation `O` and prints its response as the AWS CLI does
/// (nothing for `{}`).
fn run<O: Operation>(g: &GlobalOpts, req: Value, out: &OutputOpts) -> anyhow::Result<ExitCode> {
    let resp = aws::call::<O>(g, &req)?;
    aws::print(O::OP.name(), resp, out)?;
    Ok(ExitCode::SUCCESS)
}

/// Create a log group in the local CloudWatch Logs store, for tasks whose awslogs
/// configuration has no `awslogs-create-group` (aws logs create-log-group).
#[derive(Debug, Args)]
pub struct CreateLogGroupArgs {
    /// The name of the log group: 1-512 characters of a-z, A-Z, 0-9, `_`, `-`, `/`, `.`,
    /// `#`.
    #[arg(long)]
    pub log_group_name: String,
    /// CloudWatch's KMS key for the group's events: refused here (docs/logs.md).
    #[arg(long)]
    pub kms_key_id: Option<String>,
    /// CloudWatch's tags for the group (`Key=Value,…` or JSON): refused here
    /// (docs/logs.md).
    #[arg(long)]
    pub tags: Option<String>,
    /// CloudWatch's log group class (STANDARD, INFREQUENT_ACCESS): refused here
    /// (docs/logs.md).
    #[arg(long)]
    pub log_group_class: Option<String>,
    #[command(flatten)]
    pub output: OutputOpts,
}

pub fn create_log_group(g: &GlobalOpts, a: CreateLogGroupArgs) -> anyhow::Result<ExitCode> {
    let mut req = Map::new();
    req.insert(
        "logGroupName".into(),
        json!(aws::param_value(&a.log_group_name)?),
    );
    if let Some(k) = &a.kms_key_id {
        req.insert("kmsKeyId".into(), json!(aws::param_value(k)?));
    }
    if let Some(t) = &a.tags {
        let shape = json!({"KeyName": ""});
        req.insert("tags".into(), aws::structured(t, &shape, "--tags")?);
    }
    if let Some(c) = &a.log_group_class {
        req.insert("logGroupClass".into(), json!(aws::param_value(c)?));
    }
    run::<ops::CreateLogGroup>(g, Value::Object(req), &a.output)
}

/// List the log groups of the local CloudWatch Logs store (aws logs describe-log-groups).
#[derive(Debug, Args)]
pub struct DescribeLogGroupsArgs {
    /// Only groups whose name starts with this.
    #[arg(long)]
    pub log_group_name_prefix: Option<String>,
    /// Only groups whose name contains this (case-insensitive).
    #[arg(long)]
    pub log_group_name_pattern: Option<String>,
    #[command(flatten)]
    pub pages: PageOpts,
    #[command(flatten)]
    pub output: OutputOpts,
}

pub fn describe_log_groups(g: &GlobalOpts, a: DescribeLogGroupsArgs) -> anyhow::Result<ExitCode> {
    let mut req = json!({});
    if let Some(p) = &a.log_group_name_prefix {
        req["logGroupNamePrefix"] = json!(aws::param_value(p)?);
    }
    if let Some(p) = &a.log_group_name_pattern {
        req["logGroupNamePattern"] = json!(aws::param_value(p)?);
    }
    // The AWS CLI's paginator for DescribeLogGroups (botocore logs paginators-1.json).
    let p = super::model::Paginator {
        input_token: "nextToken".into(),
        output_token: "nextToken".into(),
        limit_key: Some("limit".into()),
        result_key: "logGroups".into(),
    };
    let resp = aws::paginate(&p, req, &a.pages, |r| {
        aws::call::<ops::DescribeLogGroups>(g, r)
    })?;
    aws::print(ops::Op::DescribeLogGroups.name(), resp, &a.output)?;
    Ok(ExitCode::SUCCESS)
}

/// Delete a log group and its streams and events (aws logs delete-log-group).
#[derive(Debug, Args)]
pub struct DeleteLogGroupArgs {
    /// The name of the log group.
    #[arg(long)]
    pub log_group_name: String,
    #[command(flatten)]
    pub output: OutputOpts,
}

pub fn delete_log_group(g: &GlobalOpts, a: DeleteLogGroupArgs) -> anyhow::Result<ExitCode> {
    let req = json!({"logGroupName": aws::param_value(&a.log_group_name)?});
    run::<ops::DeleteLogGroup>(g, req, &a.output)
}

/// Keep a log group's events for this many days; older ones are deleted (aws logs
/// put-retention-policy).
#[derive(Debug, Args)]
pub struct PutRetentionPolicyArgs {
    /// The name of the log group.
    #[arg(long)]
    pub log_group_name: String,
    /// Days to keep events: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    /// 1096, 1827, 2192, 2557, 2922, 3288 or 3653.
    #[arg(long)]
    pub retention_in_days: i64,
    #[command(flatten)]
    pub output: OutputOpts,
}

pub fn put_retention_policy(g: &GlobalOpts, a: PutRetentionPolicyArgs) -> anyhow::Result<ExitCode> {
    let req = json!({
        "logGroupName": aws::param_value(&a.log_group_name)?,
        "retentionInDays": a.retention_in_days,
    });
    run::<ops::PutRetentionPolicy>(g, req, &a.output)
}

/// `tail --format`, as the AWS CLI's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// The time (UTC, microseconds), the stream name and the message.
    #[default]
    Detailed,
    /// The time (UTC, seconds) and the message.
    Short,
    /// As `detailed`, with a message that is JSON pretty-printed below it.
    Json,
    /// Each event as one line of JSON (times in epoch milliseconds).
    None,
}

/// Print a log group's events of every stream, oldest first; with --follow, keep printing
/// new ones (aws logs tail).
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The name of the log group.
    pub group_name: String,
    /// From when: a relative time (a number and one unit of s, m, h, d, w: `5m`) or an
    /// ISO 8601 time (`2024-05-01T10:00:00Z`).
    #[arg(long, default_value = "10m", value_parser = since_ms)]
    pub since: i64,
    /// Keep polling for new events until interrupted (Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    /// How to print each event.
    #[arg(long, value_enum, default_value_t)]
    pub format: TailFormat,
    /// Only events matching this CloudWatch filter pattern.
    #[arg(long)]
    pub filter_pattern: Option<String>,
    /// Only these streams.
    #[arg(long, num_args = 1.., conflicts_with = "log_stream_name_prefix")]
    pub log_stream_names: Option<Vec<String>>,
    /// Only streams whose name starts with this.
    #[arg(long)]
    pub log_stream_name_prefix: Option<String>,
}

/// How often `tail --follow` asks again: the store is local, so much more often than the
/// AWS CLI's 5 s (the awslogs driver commits every 0.2 s, `supervisor::logs::awslogs::FLUSH_EVERY`).
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// `--since` in epoch milliseconds. Ref: aws-cli v2 `awscli/customizations/logs/tail.py`
/// (`TimestampUtils`: `<amount><s|m|h|d|w>` relative to now, else a timestamp).
fn since_ms(s: &str) -> Result<i64, String> {
    let now = chrono::Utc::now();
    let t = s.trim();
    if let Some(unit) = t.chars().last()
        && let Some(n) = t[..t.len() - unit.len_utf8()]
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && t.as_bytes()[0].is_ascii_digit())
    {
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => 0,
        };
        if secs > 0 {
            return Ok(now.timestamp_millis() - n.saturating_mul(secs * 1000));
        }
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(d.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    // botocore's parse_timestamp also takes epoch seconds.
    if let Ok(secs) = t.parse::<f64>() {
        return Ok((secs * 1000.0) as i64);
    }
    Err(format!(
        "{s:?} is neither a relative time (a number and one of s, m, h, d, w: 5m, 2h) nor an \
         ISO 8601 time (2024-05-01T10:00:00Z)"
    ))
}

/// One event as `tail --format` prints it, ending with one newline (trailing whitespace
/// of the message dropped, as the AWS CLI does).
fn format_event(e: &Value, format: TailFormat, color: bool) -> String {
    let ts = e["timestamp"].as_i64().unwrap_or_default();
    let t = chrono::DateTime::from_timestamp_millis(ts).unwrap_or_default();
    let paint = |s: String, code: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    let stream = || paint(e["logStreamName"].as_str().unwrap_or_default().into(), "36");
    let message = e["message"].as_str().unwrap_or_default();
    let line = match format {
        TailFormat::Detailed => format!(
            "{} {} {message}",
            paint(t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(), "32"),
            stream()
        ),
        TailFormat::Short => format!(
            "{} {message}",
            paint(t.format("%Y-%m-%dT%H:%M:%S").to_string(), "32")
        ),
        TailFormat::Json => {
            // Python's isoformat(): microseconds only when there are some.
            let f = if ts % 1000 == 0 {
                "%Y-%m-%dT%H:%M:%S+00:00"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6f+00:00"
            };
            let body = match serde_json::from_str::<Value>(message) {
                Ok(v) => format!("\n{}", aws::json_text(&v).unwrap_or_default()),
                Err(_) => message.to_string(),
            };
            format!(
                "{} {} {body}",
                paint(t.format(f).to_string(), "32"),
                stream()
            )
        }
        TailFormat::None => e.to_string(),
    };
    format!("{}\n", line.trim_end())
}

pub fn tail(g: &GlobalOpts, a: TailArgs) -> anyhow::Result<ExitCode> {
    if a.group_name.is_empty() {
        return Err(UsageError("tail: the log group name is empty".into()).into());
    }
    let mut req = json!({
        "logGroupName": a.group_name,
        "startTime": a.since,
        "interleaved": true,
    });
    if let Some(p) = &a.filter_pattern {
        req["filterPattern"] = json!(p);
    }
    if let Some(n) = &a.log_stream_names {
        req["logStreamNames"] = json!(n);
    }
    if let Some(p) = &a.log_stream_name_prefix {
        req["logStreamNamePrefix"] = json!(p);
    }
    use std::io::IsTerminal;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    // Following, as the AWS CLI follows: every page; at the last one, again from the
    // newest timestamp seen, skipping the events of that timestamp already printed.
    let mut newest: Option<(i64, Vec<String>)> = None;
    loop {
        let resp = aws::call::<ops::FilterLogEvents>(g, &req)?;
        for e in resp["events"].as_array().into_iter().flatten() {
            let ts = e["timestamp"].as_i64().unwrap_or_default();
            let id = e["eventId"].as_str().unwrap_or_default().to_string();
            match &mut newest {
                Some((t, ids)) if *t == ts => {
                    if ids.contains(&id) {
                        continue;
                    }
                    ids.push(id);
                }
                Some((t, _)) if *t > ts => {}
                _ => newest = Some((ts, vec![id])),
            }
            out.write_all(format_event(e, a.format, color).as_bytes())?;
        }
        out.flush()?;
        match resp.get("nextToken").filter(|t| !t.is_null()) {
            Some(t) => req["nextToken"] = t.clone(),
            None if !a.follow => break,
            None => {
                if let Some(m) = req.as_object_mut() {
                    m.remove("nextToken");
                }
                if let Some((t, _)) = &newest {
                    req["startTime"] = json!(t);
                }
                std::thread::sleep(FOLLOW_EVERY);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_the_aws_clis_relative_and_absolute_times() {
        let now = chrono::Utc::now().timestamp_millis();
        let five_m = since_ms("5m").unwrap();
        assert!((now - 300_000 - five_m).abs() < 5_000, "{five_m}");
        assert!((now - 2 * 7 * 86_400_000 - since_ms("2w").unwrap()).abs() < 5_000);
        assert_eq!(since_ms("2024-05-01T10:00:00Z").unwrap(), 1_714_557_600_000);
        assert_eq!(since_ms("2024-05-01T10:00:00").unwrap(), 1_714_557_600_000);
        assert_eq!(since_ms("2024-05-01").unwrap(), 1_714_521_600_000);
        assert_eq!(since_ms("1714557600").unwrap(), 1_714_557_600_000);
        // The AWS CLI takes one unit only.
        assert!(since_ms("1h30m").is_err());
        assert!(since_ms("m").is_err());
    }

    #[test]
    fn formats_are_the_aws_clis() {
        let e = json!({"logStreamName": "ecs/app/1", "timestamp": 1_714_557_600_123i64,
                       "message": "{\"a\": [1]}  \n", "ingestionTime": 1, "eventId": "7"});
        assert_eq!(
            format_event(&e, TailFormat::Detailed, false),
            "2024-05-01T10:00:00.123000+00:00 ecs/app/1 {\"a\": [1]}\n"
        );
        assert_eq!(
            format_event(&e, TailFormat::Short, false),
            "2024-05-01T10:00:00 {\"a\": [1]}\n"
        );
        assert_eq!(
            format_event(&e, TailFormat::Json, false),
            "2024-05-01T10:00:00.123000+00:00 ecs/app/1 \n{\n    \"a\": [\n        1\n    ]\n}\n"
        );
        assert_eq!(
            format_event(&e, TailFormat::Detailed, true),
            "\x1b[32m2024-05-01T10:00:00.123000+00:00\x1b[0m \x1b[36mecs/app/1\x1b[0m {\"a\": [1]}\n"
        );
    }
}
