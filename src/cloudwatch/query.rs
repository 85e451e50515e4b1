//! The queries of GetMetricData and of alarms on metric math (PutMetricAlarm's
//! `Metrics`): the model's `MetricDataQuery`, checked as CloudWatch checks it, and
//! evaluated over the box's [`Metrics`]: each MetricStat query's series, then the
//! expressions ([`math`]) in the order their references need. GetMetricData
//! (`ops`) answers the results; an alarm (`alarms`) watches the one with `ReturnData`.

use super::math;
use super::metrics::{MetricId, Millis, Stat};
use super::{CwError, CwResult, Metrics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// CloudWatch's units (the model's `StandardUnit`).
pub(super) const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

pub(super) fn invalid(m: impl Into<String>) -> CwError {
    CwError::InvalidParameterValue(m.into())
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

pub(super) fn check_len(s: &str, what: &str, max: usize) -> CwResult<()> {
    if s.is_empty() || s.chars().count() > max {
        return Err(invalid(format!(
            "The parameter {what} must be between 1 and {max} characters long"
        )));
    }
    Ok(())
}

pub(super) fn dimensions(dims: &[Dimension], what: &str) -> CwResult<BTreeMap<String, String>> {
    if dims.len() > 30 {
        return Err(invalid(format!(
            "The collection {what} must not have a size greater than 30."
        )));
    }
    let mut out = BTreeMap::new();
    for (i, d) in dims.iter().enumerate() {
        check_len(&d.name, &format!("{what}.member.{}.Name", i + 1), 255)?;
        check_len(&d.value, &format!("{what}.member.{}.Value", i + 1), 1024)?;
        if out.insert(d.name.clone(), d.value.clone()).is_some() {
            return Err(invalid(format!(
                "The dimension name {:?} appears more than once in {what}",
                d.name
            )));
        }
    }
    Ok(out)
}

pub(super) fn unit(u: Option<&str>, what: &str) -> CwResult<String> {
    match u {
        None => Ok("None".into()),
        Some(u) if UNITS.contains(&u) => Ok(u.to_string()),
        Some(u) => Err(invalid(format!(
            "The value {u} for parameter {what} is invalid: it must be one of {}",
            UNITS.join(", ")
        ))),
    }
}

pub(super) fn namespace(ns: Option<&str>) -> CwResult<String> {
    let ns =
        ns.ok_or_else(|| CwError::MissingParameter("The parameter Namespace is required.".into()))?;
    check_len(ns, "Namespace", 255)?;
    if ns.starts_with(':') {
        return Err(invalid(format!(
            "The value {ns} for parameter Namespace is invalid: it must not start with ':'"
        )));
    }
    Ok(ns.to_string())
}

pub(super) fn millis(seconds: f64) -> Millis {
    (seconds * 1000.0).round() as Millis
}

/// GetMetricStatistics and GetMetricData: a period is 1, 5, 10, 20, 30 or a multiple of
/// 60 seconds.
pub(super) fn period(p: i64, what: &str) -> CwResult<Millis> {
    if matches!(p, 1 | 5 | 10 | 20 | 30) || (p >= 60 && p % 60 == 0) {
        Ok(p * 1000)
    } else {
        Err(invalid(format!(
            "The parameter {what} must be 1, 5, 10, 20, 30, or a multiple of 60 (got {p})"
        )))
    }
}

/// The start of a query, rounded down as CloudWatch rounds it: to the minute, or for a
/// period under a minute to that period's divisions of the minute; older starts to 5
/// minutes (15–63 days ago) or the hour (older).
pub(super) fn round_start(start: Millis, period: Millis, now: Millis) -> Millis {
    let age = now - start;
    let unit = if age > 63 * 24 * 3600 * 1000 {
        3_600_000
    } else if age > 15 * 24 * 3600 * 1000 {
        300_000
    } else {
        period.min(60_000)
    };
    start.div_euclid(unit) * unit
}

pub(super) fn time_range(
    start: f64,
    end: f64,
    period_ms: Millis,
    now: Millis,
) -> CwResult<(Millis, Millis)> {
    let (start, end) = (millis(start), millis(end));
    if start >= end {
        return Err(invalid(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    Ok((round_start(start, period_ms, now), end))
}

pub(super) fn required<T>(v: Option<T>, name: &str) -> CwResult<T> {
    v.ok_or_else(|| CwError::MissingParameter(format!("The parameter {name} is required.")))
}

/// The model's `Metric`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Metric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
}

/// The model's `MetricStat` (`Period` is required: refused when missing, naming it).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MetricStat {
    pub metric: Metric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<i64>,
    pub stat: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The model's `MetricDataQuery`, as GetMetricData and PutMetricAlarm take it (and
/// DescribeAlarms answers it back).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MetricDataQuery {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<MetricStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

pub(super) fn metric_id_ok(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// An expression CloudWatch cannot evaluate: its `ValidationError`, naming the query.
pub(super) fn expression_error(id: &str, e: &math::MathError) -> CwError {
    CwError::Validation(format!("Error in expression {id}: {e}"))
}

/// Evaluates the expressions of a GetMetricData request into `values`, each after the
/// ids it refers to (METRICS() refers to every metric query); a cycle is refused.
/// `range` is (StartTime, EndTime, the shortest MetricStat period, now): an expression's
/// non-sparse series (TIME_SERIES, FILL, MINUTE…) have a timestamp every period (its own
/// `Period`, else that one, else a minute) from the rounded start to the end.
pub(super) fn evaluate_expressions(
    queries: &[MetricDataQuery],
    expressions: &[(usize, math::Expr)],
    metrics: &[(String, math::Series)],
    values: &mut BTreeMap<String, math::Value>,
    range: (f64, f64, Option<Millis>, Millis),
) -> CwResult<()> {
    let (start_s, end_s, shortest, now) = range;
    let by_id: BTreeMap<&str, (usize, &math::Expr)> = expressions
        .iter()
        .map(|(i, e)| (queries[*i].id.as_str(), (*i, e)))
        .collect();
    // Depth-first: an id in `visiting` met again is a cycle.
    fn visit(
        id: &str,
        by_id: &BTreeMap<&str, (usize, &math::Expr)>,
        metrics: &[(String, math::Series)],
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) -> CwResult<()> {
        if order.iter().any(|o| o == id) {
            return Ok(());
        }
        let Some((_, e)) = by_id.get(id) else {
            return Ok(());
        };
        if visiting.iter().any(|v| v == id) {
            return Err(expression_error(
                id,
                &math::MathError(format!(
                    "the expressions refer to each other in a cycle: {} -> {id}",
                    visiting.join(" -> ")
                )),
            ));
        }
        visiting.push(id.to_string());
        let mut refs = std::collections::BTreeSet::new();
        math::references(e, &mut refs);
        for r in refs {
            if !by_id.contains_key(r.as_str()) && !metrics.iter().any(|(m, _)| *m == r) {
                return Err(expression_error(
                    id,
                    &math::MathError(format!(
                        "Unrecognized id {r}: no query of the request has it"
                    )),
                ));
            }
            visit(&r, by_id, metrics, order, visiting)?;
        }
        visiting.pop();
        order.push(id.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for (i, _) in expressions {
        visit(
            &queries[*i].id,
            &by_id,
            metrics,
            &mut order,
            &mut Vec::new(),
        )?;
    }
    for id in order {
        let (i, e) = by_id[id.as_str()];
        let period_ms = match queries[i].period {
            Some(p) => p * 1000,
            None => shortest.unwrap_or(60_000),
        };
        let (start, end) = time_range(start_s, end_s, period_ms, now)?;
        let grid: Vec<Millis> = (0..)
            .map(|k| start + k * period_ms)
            .take_while(|t| *t < end)
            .take(100_800)
            .collect();
        let cx = math::Context {
            values,
            metrics,
            grid,
        };
        let v = math::eval(e, &cx).map_err(|m| expression_error(&id, &m))?;
        values.insert(id, v);
    }
    Ok(())
}

/// A period check: GetMetricData's ([`period`]) or an alarm's.
pub type PeriodCheck<'a> = dyn Fn(i64, &str) -> CwResult<Millis> + 'a;

/// Checks `queries` (named `collection` in messages: `MetricDataQueries`, `Metrics`) as
/// CloudWatch checks them and evaluates them over `m` between `range` (StartTime,
/// EndTime, epoch seconds): each query's value by Id (a MetricStat's series, an
/// expression's result). A period is checked by `check_period`.
pub fn evaluate(
    m: &Metrics,
    queries: &[MetricDataQuery],
    collection: &str,
    check_period: &PeriodCheck,
    range: (f64, f64),
    now: Millis,
) -> CwResult<BTreeMap<String, math::Value>> {
    let (start_s, end_s) = range;
    let mut seen_ids = std::collections::HashSet::new();
    // Each query's series (MetricStat) or parsed expression, in request order.
    let mut metric_series: Vec<(String, math::Series)> = Vec::new();
    let mut expressions: Vec<(usize, math::Expr)> = Vec::new();
    let mut shortest_period: Option<Millis> = None;
    for (i, q) in queries.iter().enumerate() {
        let what = format!("{collection}.member.{}", i + 1);
        if !metric_id_ok(&q.id) || q.id.len() > 255 {
            return Err(invalid(format!(
                "The value {} for parameter {what}.Id is invalid: it must start with a \
                 lowercase letter and hold only letters, digits and underscores",
                q.id
            )));
        }
        if !seen_ids.insert(q.id.clone()) {
            return Err(invalid(format!(
                "The value {} for parameter {what}.Id is used by more than one query",
                q.id
            )));
        }
        if let Some(a) = &q.account_id
            && *a != crate::taskdef::AwsContext::from_env().account_id
        {
            return Err(invalid(format!(
                "{what}.AccountId {a}: this box holds the metrics of its own account only"
            )));
        }
        let stat = match (&q.metric_stat, &q.expression) {
            (Some(s), None) => s,
            (None, Some(e)) => {
                if e.is_empty() || e.chars().count() > 2048 {
                    return Err(invalid(format!(
                        "The parameter {what}.Expression must be between 1 and 2048 characters \
                         long"
                    )));
                }
                if let Some(p) = q.period {
                    check_period(p, &format!("{what}.Period"))?;
                }
                let parsed = math::parse(e).map_err(|m| expression_error(&q.id, &m))?;
                expressions.push((i, parsed));
                continue;
            }
            _ => {
                return Err(CwError::InvalidParameterCombination(format!(
                    "{what} must have exactly one of MetricStat and Expression"
                )));
            }
        };
        let period_ms = check_period(
            required(stat.period, &format!("{what}.MetricStat.Period"))?,
            &format!("{what}.MetricStat.Period"),
        )?;
        shortest_period = Some(shortest_period.map_or(period_ms, |p| p.min(period_ms)));
        let st = Stat::parse(&stat.stat).ok_or_else(|| {
            invalid(format!(
                "The value {} for parameter {what}.MetricStat.Stat is invalid: this host \
                 computes SampleCount, Average, Sum, Minimum, Maximum and percentiles pNN \
                 (trimmed and windsorized statistics are not computed; docs/cloudwatch.md)",
                stat.stat
            ))
        })?;
        let (start, end) = time_range(start_s, end_s, period_ms, now)?;
        let ns = namespace(stat.metric.namespace.as_deref())?;
        let name = required(
            stat.metric.metric_name.clone(),
            &format!("{what}.MetricStat.Metric.MetricName"),
        )?;
        let id = MetricId {
            namespace: ns,
            name: name.clone(),
            dimensions: dimensions(
                &stat.metric.dimensions,
                &format!("{what}.MetricStat.Metric.Dimensions"),
            )?,
        };
        let u = match stat.unit.as_deref() {
            Some(u) => Some(unit(Some(u), &format!("{what}.MetricStat.Unit"))?),
            None => None,
        };
        let points: BTreeMap<Millis, f64> = m
            .query(&id, start, end, period_ms, u.as_deref())
            .iter()
            .filter_map(|p| st.of(p).map(|v| (p.start, v)))
            .collect();
        metric_series.push((
            q.id.clone(),
            math::Series {
                label: q.label.clone().unwrap_or(name),
                points,
                period: Some(period_ms),
            },
        ));
    }
    let mut values: BTreeMap<String, math::Value> = metric_series
        .iter()
        .map(|(id, s)| (id.clone(), math::Value::Series(s.clone())))
        .collect();
    evaluate_expressions(
        queries,
        &expressions,
        &metric_series,
        &mut values,
        (start_s, end_s, shortest_period, now),
    )?;
    Ok(values)
}
