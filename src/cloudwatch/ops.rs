//! CloudWatch's metric operations over the box's [`Metrics`]: PutMetricData,
//! GetMetricStatistics, GetMetricData, ListMetrics. A request arrives as JSON (the JSON
//! protocol's body, or a CBOR body read into JSON by the front-end: timestamps as epoch
//! seconds, doubles CloudWatch refuses as the strings `NaN`/`Infinity`); the answer is
//! JSON with timestamps as epoch seconds ([`TIMESTAMP_MEMBERS`] names them for the
//! encoders that need to know).
//!
//! Ref: Amazon CloudWatch API Reference, PutMetricData, GetMetricStatistics,
//! GetMetricData, ListMetrics (limits, rounding of StartTime, retention).

use super::alarms::{Alarm, PutMetricAlarmInput};
use super::math;
use super::metrics::{Datum, MetricId, Millis, Stat, Stats};
use super::query::{
    self, Dimension, MetricDataQuery, check_len, dimensions, expression_error, invalid, millis,
    namespace, period, required, time_range, unit,
};
use super::{CloudWatch, CwError, CwResult, Metrics};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The operations served, in the order docs/cloudwatch.md lists them.
pub const OPERATIONS: &[&str] = &[
    "PutMetricData",
    "GetMetricStatistics",
    "GetMetricData",
    "ListMetrics",
    "PutMetricAlarm",
    "DescribeAlarms",
    "DescribeAlarmsForMetric",
    "DeleteAlarms",
    "SetAlarmState",
    "DescribeAlarmHistory",
    "EnableAlarmActions",
    "DisableAlarmActions",
    "ListTagsForResource",
    "TagResource",
    "UntagResource",
];

/// The members of the answers that are timestamps (the model's `timestamp` shapes, and
/// `Timestamps`, a list of them): the CBOR encoder tags them (tag 1, epoch seconds).
pub const TIMESTAMP_MEMBERS: &[&str] = &[
    "Timestamp",
    "Timestamps",
    "AlarmConfigurationUpdatedTimestamp",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
];

/// Runs CloudWatch operation `op` with request `body` at `now`.
pub fn call(cw: &CloudWatch, op: &str, body: Value, now: Millis) -> CwResult<Value> {
    let m = &*cw.metrics;
    m.age(now);
    match op {
        "PutMetricData" => put_metric_data(m, decode(body)?, now),
        "GetMetricStatistics" => get_metric_statistics(m, decode(body)?, now),
        "GetMetricData" => get_metric_data(m, decode(body)?, now),
        "ListMetrics" => list_metrics(m, decode(body)?, now),
        "PutMetricAlarm" => {
            let req: PutMetricAlarmInput = decode(body)?;
            if let Some(u) = &req.unit {
                unit(Some(u), "Unit")?;
            }
            cw.alarms.put(req, now)?;
            Ok(json!({}))
        }
        "DescribeAlarms" => describe_alarms(cw, decode(body)?),
        "DescribeAlarmsForMetric" => describe_alarms_for_metric(cw, decode(body)?),
        "DeleteAlarms" => {
            let req: AlarmNames = decode(body)?;
            cw.alarms.delete(&req.alarm_names)?;
            Ok(json!({}))
        }
        "EnableAlarmActions" | "DisableAlarmActions" => {
            let req: AlarmNames = decode(body)?;
            cw.alarms
                .set_actions(&req.alarm_names, op == "EnableAlarmActions")?;
            Ok(json!({}))
        }
        "SetAlarmState" => {
            let req: SetAlarmStateInput = decode(body)?;
            cw.alarms.set_state(
                &req.alarm_name,
                &req.state_value,
                req.state_reason,
                req.state_reason_data,
                now,
            )?;
            Ok(json!({}))
        }
        "DescribeAlarmHistory" => describe_alarm_history(cw, decode(body)?),
        // Ref: CloudWatch API Reference, ListTagsForResource / TagResource / UntagResource:
        // of the resources they tag, alarms are served here.
        "ListTagsForResource" => {
            let req: ListTagsInput = decode(body)?;
            Ok(json!({"Tags": cw.alarms.tags(&req.resource_arn)?}))
        }
        "TagResource" => {
            let req: TagResourceInput = decode(body)?;
            cw.alarms.tag(&req.resource_arn, req.tags)?;
            Ok(json!({}))
        }
        "UntagResource" => {
            let req: UntagResourceInput = decode(body)?;
            cw.alarms.untag(&req.resource_arn, &req.tag_keys)?;
            Ok(json!({}))
        }
        other => Err(CwError::UnknownOperation(format!(
            "{other} is not supported by minifargate's CloudWatch API (it serves {}; see \
             docs/cloudwatch.md)",
            OPERATIONS.join(", ")
        ))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: Value) -> CwResult<T> {
    let body = if body.is_null() { json!({}) } else { body };
    serde_path_to_error::deserialize(body).map_err(|e| {
        CwError::Serialization(format!("invalid request: {}: {}", e.path(), e.inner()))
    })
}

/// A double of the request: a number, or the strings the JSON protocols use for the
/// values JSON has no number for (refused where CloudWatch refuses them).
#[derive(Debug, Clone, Copy)]
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Double, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(v) => Ok(Double(v)),
            Raw::S(s) => match s.as_str() {
                "NaN" => Ok(Double(f64::NAN)),
                "Infinity" => Ok(Double(f64::INFINITY)),
                "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, got the string {other:?}"
                ))),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListTagsInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    #[serde(rename = "Tags")]
    tags: Vec<super::alarms::Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    #[serde(rename = "TagKeys")]
    tag_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct StatisticSet {
    sample_count: Double,
    sum: Double,
    minimum: Double,
    maximum: Double,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct MetricDatum {
    metric_name: String,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    timestamp: Option<f64>,
    value: Option<Double>,
    statistic_values: Option<StatisticSet>,
    values: Option<Vec<Double>>,
    counts: Option<Vec<Double>>,
    unit: Option<String>,
    storage_resolution: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct EntityMetricData {
    #[allow(dead_code)]
    entity: Option<Value>,
    #[serde(default)]
    metric_data: Vec<MetricDatum>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct PutMetricDataInput {
    namespace: Option<String>,
    #[serde(default)]
    metric_data: Vec<MetricDatum>,
    #[serde(default)]
    entity_metric_data: Vec<EntityMetricData>,
    #[allow(dead_code)]
    strict_entity_validation: Option<bool>,
}

/// CloudWatch's bound of a value: |v| ≤ 2^360, and no NaN or infinity.
fn check_value(v: f64, what: &str) -> CwResult<f64> {
    if !v.is_finite() || v.abs() > 2f64.powi(360) {
        return Err(invalid(format!(
            "The value {v} for parameter {what} is invalid: values must be finite numbers \
             between -2^360 and 2^360 (NaN and infinities are not supported)"
        )));
    }
    Ok(v)
}

fn seconds(ms: Millis) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn datum(d: &MetricDatum, what: &str, now: Millis) -> CwResult<Datum> {
    let at = d.timestamp.map_or(now, millis);
    // PutMetricData: a time stamp up to two weeks in the past and two hours ahead.
    if at < now - 14 * 24 * 3600 * 1000 || at > now + 2 * 3600 * 1000 {
        return Err(invalid(format!(
            "The parameter {what}.Timestamp must specify a time no more than two weeks in \
             the past and no more than two hours in the future"
        )));
    }
    let high_resolution = match d.storage_resolution {
        None | Some(60) => false,
        Some(1) => true,
        Some(r) => {
            return Err(invalid(format!(
                "The value {r} for parameter {what}.StorageResolution is invalid: it must be \
                 1 (high resolution) or 60 (standard)"
            )));
        }
    };
    let given = [
        d.value.is_some(),
        d.statistic_values.is_some(),
        d.values.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given > 1 {
        return Err(CwError::InvalidParameterCombination(format!(
            "The parameters {what}.Value, {what}.StatisticValues and {what}.Values are \
             mutually exclusive: give one"
        )));
    }
    if d.counts.is_some() && d.values.is_none() {
        return Err(CwError::InvalidParameterCombination(format!(
            "The parameter {what}.Counts is given without {what}.Values"
        )));
    }
    let (stats, raw) = if let Some(v) = d.value {
        let v = check_value(v.0, &format!("{what}.Value"))?;
        (Stats::one(v), Some(vec![(v, 1.0)]))
    } else if let Some(s) = &d.statistic_values {
        let [count, sum, min, max] = [
            (s.sample_count.0, "SampleCount"),
            (s.sum.0, "Sum"),
            (s.minimum.0, "Minimum"),
            (s.maximum.0, "Maximum"),
        ]
        .map(|(v, n)| check_value(v, &format!("{what}.StatisticValues.{n}")));
        let (count, sum, min, max) = (count?, sum?, min?, max?);
        if count <= 0.0 || min > max {
            return Err(invalid(format!(
                "The parameter {what}.StatisticValues is invalid: SampleCount must be \
                 positive and Minimum at most Maximum"
            )));
        }
        // Percentiles from a statistic set only when its samples are one value
        // (GetMetricStatistics: SampleCount 1, or Minimum equal to Maximum).
        let raw = (count == 1.0 || min == max).then(|| vec![(min, count)]);
        (
            Stats {
                count,
                sum,
                min,
                max,
            },
            raw,
        )
    } else if let Some(values) = &d.values {
        if values.is_empty() || values.len() > 150 {
            return Err(invalid(format!(
                "The collection {what}.Values must have between 1 and 150 values"
            )));
        }
        let counts: Vec<f64> = match &d.counts {
            Some(c) if c.len() != values.len() => {
                return Err(CwError::InvalidParameterCombination(format!(
                    "The parameters {what}.Values and {what}.Counts must have the same number \
                     of members"
                )));
            }
            Some(c) => c.iter().map(|x| x.0).collect(),
            None => vec![1.0; values.len()],
        };
        let mut stats: Option<Stats> = None;
        let mut raw = Vec::with_capacity(values.len());
        for (i, (v, c)) in values.iter().zip(&counts).enumerate() {
            let v = check_value(v.0, &format!("{what}.Values.member.{}", i + 1))?;
            let c = check_value(*c, &format!("{what}.Counts.member.{}", i + 1))?;
            if c < 0.0 {
                return Err(invalid(format!(
                    "The parameter {what}.Counts.member.{} must not be negative",
                    i + 1
                )));
            }
            if c == 0.0 {
                continue;
            }
            let s = Stats {
                count: c,
                sum: v * c,
                min: v,
                max: v,
            };
            match &mut stats {
                Some(t) => t.merge(&s),
                None => stats = Some(s),
            }
            raw.push((v, c));
        }
        match stats {
            Some(s) => (s, Some(raw)),
            None => {
                return Err(invalid(format!(
                    "The parameter {what}.Counts gives no value a positive count"
                )));
            }
        }
    } else {
        return Err(CwError::InvalidParameterCombination(format!(
            "The parameter {what} must specify one of Value, StatisticValues or Values"
        )));
    };
    Ok(Datum {
        at,
        unit: unit(d.unit.as_deref(), &format!("{what}.Unit"))?,
        stats,
        raw,
        high_resolution,
    })
}

fn put_metric_data(m: &Metrics, req: PutMetricDataInput, now: Millis) -> CwResult<Value> {
    let ns = namespace(req.namespace.as_deref())?;
    if ns.starts_with("AWS/") {
        return Err(invalid(format!(
            "The value {ns} for parameter Namespace is invalid: namespaces starting with \
             AWS/ are reserved for AWS services"
        )));
    }
    let entity: Vec<(&MetricDatum, String)> = req
        .entity_metric_data
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            e.metric_data.iter().enumerate().map(move |(j, d)| {
                (
                    d,
                    format!(
                        "EntityMetricData.member.{}.MetricData.member.{}",
                        i + 1,
                        j + 1
                    ),
                )
            })
        })
        .collect();
    let all: Vec<(&MetricDatum, String)> = req
        .metric_data
        .iter()
        .enumerate()
        .map(|(i, d)| (d, format!("MetricData.member.{}", i + 1)))
        .chain(entity)
        .collect();
    if all.is_empty() {
        return Err(CwError::MissingParameter(
            "The parameter MetricData is required.".into(),
        ));
    }
    if all.len() > 1000 {
        return Err(invalid(
            "The collection MetricData must not have a size greater than 1000.",
        ));
    }
    // Every datum is checked before any is stored: a request is taken whole or not at all.
    let mut checked = Vec::with_capacity(all.len());
    for (d, what) in &all {
        check_len(&d.metric_name, &format!("{what}.MetricName"), 255)?;
        let id = MetricId {
            namespace: ns.clone(),
            name: d.metric_name.clone(),
            dimensions: dimensions(&d.dimensions, &format!("{what}.Dimensions"))?,
        };
        checked.push((id, datum(d, what, now)?));
    }
    for (id, d) in &checked {
        m.put(id, std::slice::from_ref(d), now);
    }
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GetMetricStatisticsInput {
    namespace: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    period: Option<i64>,
    statistics: Option<Vec<String>>,
    extended_statistics: Option<Vec<String>>,
    unit: Option<String>,
}

fn get_metric_statistics(
    m: &Metrics,
    req: GetMetricStatisticsInput,
    now: Millis,
) -> CwResult<Value> {
    let ns = namespace(req.namespace.as_deref())?;
    let name = required(req.metric_name, "MetricName")?;
    check_len(&name, "MetricName", 255)?;
    let period_ms = period(required(req.period, "Period")?, "Period")?;
    let (start, end) = time_range(
        required(req.start_time, "StartTime")?,
        required(req.end_time, "EndTime")?,
        period_ms,
        now,
    )?;
    let stats: Vec<(String, Stat, bool)> = match (req.statistics, req.extended_statistics) {
        (Some(_), Some(_)) => {
            return Err(CwError::InvalidParameterCombination(
                "The parameters Statistics and ExtendedStatistics are mutually exclusive: give \
                 one."
                    .into(),
            ));
        }
        (None, None) => {
            return Err(CwError::MissingParameter(
                "Either the parameter Statistics or ExtendedStatistics is required.".into(),
            ));
        }
        (Some(s), None) => {
            if s.is_empty() || s.len() > 5 {
                return Err(invalid(
                    "The collection Statistics must have between 1 and 5 members.",
                ));
            }
            s.into_iter()
                .map(|n| match Stat::parse(&n) {
                    Some(st) if !matches!(st, Stat::Percentile(_)) => Ok((n, st, false)),
                    _ => Err(invalid(format!(
                        "The value {n} for parameter Statistics is invalid: it must be one of \
                         SampleCount, Average, Sum, Minimum, Maximum"
                    ))),
                })
                .collect::<CwResult<_>>()?
        }
        (None, Some(e)) => {
            if e.is_empty() || e.len() > 10 {
                return Err(invalid(
                    "The collection ExtendedStatistics must have between 1 and 10 members.",
                ));
            }
            e.into_iter()
                .map(|n| match Stat::parse(&n) {
                    Some(st @ Stat::Percentile(_)) => Ok((n, st, true)),
                    _ => Err(invalid(format!(
                        "The value {n} for parameter ExtendedStatistics is invalid: a \
                         percentile p0.0 to p100 is expected"
                    ))),
                })
                .collect::<CwResult<_>>()?
        }
    };
    let unit_filter = match req.unit.as_deref() {
        Some(u) => Some(unit(Some(u), "Unit")?),
        None => None,
    };
    if (end - start).div_euclid(period_ms) > 1440 {
        return Err(CwError::InvalidParameterCombination(
            "You have requested up to 1,440 datapoints, which exceeds the limit of 1,440. You \
             may reduce the datapoints requested by increasing Period, or decreasing the time \
             range."
                .into(),
        ));
    }
    let id = MetricId {
        namespace: ns,
        name: name.clone(),
        dimensions: dimensions(&req.dimensions, "Dimensions")?,
    };
    let mut points = Vec::new();
    for p in m.query(&id, start, end, period_ms, unit_filter.as_deref()) {
        let mut dp = serde_json::Map::new();
        dp.insert("Timestamp".into(), seconds(p.start));
        let mut extended = serde_json::Map::new();
        for (n, st, ext) in &stats {
            if let Some(v) = st.of(&p) {
                if *ext {
                    extended.insert(n.clone(), json!(v));
                } else {
                    dp.insert(n.clone(), json!(v));
                }
            }
        }
        if !extended.is_empty() {
            dp.insert("ExtendedStatistics".into(), Value::Object(extended));
        }
        dp.insert("Unit".into(), json!(p.unit));
        points.push(Value::Object(dp));
    }
    Ok(json!({"Label": name, "Datapoints": points}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GetMetricDataInput {
    #[serde(default)]
    metric_data_queries: Vec<MetricDataQuery>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    next_token: Option<String>,
    scan_by: Option<String>,
    max_datapoints: Option<i64>,
    #[allow(dead_code)]
    label_options: Option<Value>,
}

fn get_metric_data(m: &Metrics, req: GetMetricDataInput, now: Millis) -> CwResult<Value> {
    let queries = req.metric_data_queries;
    if queries.is_empty() || queries.len() > 500 {
        return Err(invalid(
            "The collection MetricDataQueries must have between 1 and 500 members.",
        ));
    }
    let (start_s, end_s) = (
        required(req.start_time, "StartTime")?,
        required(req.end_time, "EndTime")?,
    );
    let descending = match req.scan_by.as_deref() {
        None | Some("TimestampDescending") => true,
        Some("TimestampAscending") => false,
        Some(o) => {
            return Err(invalid(format!(
                "The value {o} for parameter ScanBy is invalid: TimestampDescending or \
                 TimestampAscending"
            )));
        }
    };
    let max = match req.max_datapoints {
        None => 100_800,
        Some(n) if n > 0 => n as usize,
        Some(n) => return Err(invalid(format!("MaxDatapoints must be positive (got {n})"))),
    };
    let skip = skipped_by(req.next_token.as_deref())?;
    let values = query::evaluate(
        m,
        &queries,
        "MetricDataQueries",
        &period,
        (start_s, end_s),
        now,
    )?;
    // (Id, Label, datapoints in the answer's order) of each result.
    type Answered = (String, String, Vec<(Millis, f64)>);
    let mut results: Vec<Answered> = Vec::new();
    for q in &queries {
        if !q.return_data.unwrap_or(true) {
            continue;
        }
        let series: Vec<(String, &math::Series)> = match &values[&q.id] {
            math::Value::Series(s) if q.metric_stat.is_some() => vec![(s.label.clone(), s)],
            math::Value::Series(s) => vec![(q.label.clone().unwrap_or(q.id.clone()), s)],
            math::Value::Array(a) => a
                .iter()
                .map(|s| {
                    let label = match &q.label {
                        Some(l) if !l.is_empty() => format!("{l} {}", s.label),
                        _ => s.label.clone(),
                    };
                    (label, s)
                })
                .collect(),
            math::Value::Scalar(_) => {
                return Err(expression_error(
                    &q.id,
                    &math::MathError(
                        "the final result of an expression must be a time series or an \
                         array of time series, not a scalar"
                            .into(),
                    ),
                ));
            }
        };
        for (label, s) in series {
            let mut points: Vec<(Millis, f64)> = s.points.iter().map(|(t, v)| (*t, *v)).collect();
            if descending {
                points.reverse();
            }
            results.push((q.id.clone(), label, points));
        }
    }
    // Paging over the datapoints of every result, in order: a token is how many were
    // already answered.
    let mut budget = max;
    let mut skipped = skip;
    let mut more = false;
    let mut out = Vec::new();
    for (id, label, points) in results {
        let from = skipped.min(points.len());
        skipped -= from;
        let rest = &points[from..];
        let take = rest.len().min(budget);
        budget -= take;
        let partial = take < rest.len();
        more |= partial;
        out.push(json!({
            "Id": id,
            "Label": label,
            "Timestamps": rest[..take].iter().map(|p| seconds(p.0)).collect::<Vec<_>>(),
            "Values": rest[..take].iter().map(|p| p.1).collect::<Vec<_>>(),
            "StatusCode": if partial { "PartialData" } else { "Complete" },
        }));
    }
    let mut answer = json!({"MetricDataResults": out, "Messages": []});
    if more {
        answer["NextToken"] = json!(format!("mf1.{}", skip + max));
    }
    Ok(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DimensionFilter {
    name: String,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ListMetricsInput {
    namespace: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<DimensionFilter>,
    next_token: Option<String>,
    recently_active: Option<String>,
    #[allow(dead_code)]
    include_linked_accounts: Option<bool>,
    owning_account: Option<String>,
}

/// ListMetrics answers at most 500 metrics a page.
const LIST_PAGE: usize = 500;

fn list_metrics(m: &Metrics, req: ListMetricsInput, now: Millis) -> CwResult<Value> {
    if req.dimensions.len() > 10 {
        return Err(invalid(
            "The collection Dimensions must not have a size greater than 10.",
        ));
    }
    let since = match req.recently_active.as_deref() {
        None => now - 14 * 24 * 3600 * 1000,
        Some("PT3H") => now - 3 * 3600 * 1000,
        Some(o) => {
            return Err(invalid(format!(
                "The value {o} for parameter RecentlyActive is invalid: PT3H is the only value"
            )));
        }
    };
    let own = crate::taskdef::AwsContext::from_env().account_id;
    if req.owning_account.as_deref().is_some_and(|a| a != own) {
        return Ok(json!({"Metrics": []}));
    }
    let skip = skipped_by(req.next_token.as_deref())?;
    let matching: Vec<MetricId> = m
        .list(since)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| req.namespace.as_ref().is_none_or(|n| *n == id.namespace))
        .filter(|id| req.metric_name.as_ref().is_none_or(|n| *n == id.name))
        .filter(|id| {
            req.dimensions.iter().all(|f| match &f.value {
                Some(v) => id.dimensions.get(&f.name) == Some(v),
                None => id.dimensions.contains_key(&f.name),
            })
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(LIST_PAGE)
        .map(|id| {
            json!({
                "Namespace": id.namespace,
                "MetricName": id.name,
                "Dimensions": id.dimensions.iter()
                    .map(|(k, v)| json!({"Name": k, "Value": v}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut answer = json!({"Metrics": page});
    if matching.len() > skip + LIST_PAGE {
        answer["NextToken"] = json!(format!("mf1.{}", skip + LIST_PAGE));
    }
    Ok(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AlarmNames {
    #[serde(default)]
    alarm_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct SetAlarmStateInput {
    alarm_name: String,
    state_value: String,
    state_reason: String,
    state_reason_data: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DescribeAlarmsInput {
    alarm_names: Option<Vec<String>>,
    alarm_name_prefix: Option<String>,
    alarm_types: Option<Vec<String>>,
    children_of_alarm_name: Option<String>,
    parents_of_alarm_name: Option<String>,
    state_value: Option<String>,
    action_prefix: Option<String>,
    max_records: Option<i64>,
    next_token: Option<String>,
}

/// How many items a `NextToken` of this host's (`mf1.<n>`) says were already answered.
fn skipped_by(token: Option<&str>) -> CwResult<usize> {
    match token {
        None => Ok(0),
        Some(t) => t
            .strip_prefix("mf1.")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| CwError::InvalidNextToken(format!("The NextToken {t} is invalid"))),
    }
}

fn page_of<T: Clone>(
    items: &[T],
    token: Option<&str>,
    max: usize,
) -> CwResult<(Vec<T>, Option<String>)> {
    let skip = skipped_by(token)?;
    let page: Vec<T> = items.iter().skip(skip).take(max).cloned().collect();
    let next = (items.len() > skip + max).then(|| format!("mf1.{}", skip + max));
    Ok((page, next))
}

fn describe_alarms(cw: &CloudWatch, req: DescribeAlarmsInput) -> CwResult<Value> {
    if req.alarm_names.is_some() && req.alarm_name_prefix.is_some() {
        return Err(CwError::InvalidParameterCombination(
            "AlarmNames and AlarmNamePrefix are mutually exclusive.".into(),
        ));
    }
    if req.children_of_alarm_name.is_some() || req.parents_of_alarm_name.is_some() {
        // Composite alarms are not served: none has children or parents.
        return Ok(json!({"MetricAlarms": [], "CompositeAlarms": []}));
    }
    let max = match req.max_records {
        None => 50,
        Some(n @ 1..=100) => n as usize,
        Some(n) => return Err(invalid(format!("MaxRecords {n} must be between 1 and 100"))),
    };
    let metric_alarms_asked = req
        .alarm_types
        .as_ref()
        .is_none_or(|t| t.iter().any(|x| x == "MetricAlarm"));
    let alarms: Vec<Alarm> = cw
        .alarms
        .all()
        .into_iter()
        .filter(|_| metric_alarms_asked)
        .filter(|a| {
            req.alarm_names
                .as_ref()
                .is_none_or(|n| n.contains(&a.alarm_name))
        })
        .filter(|a| {
            req.alarm_name_prefix
                .as_ref()
                .is_none_or(|p| a.alarm_name.starts_with(p.as_str()))
        })
        .filter(|a| req.state_value.as_ref().is_none_or(|s| *s == a.state_value))
        .filter(|a| {
            req.action_prefix.as_ref().is_none_or(|p| {
                a.alarm_actions
                    .iter()
                    .chain(&a.ok_actions)
                    .chain(&a.insufficient_data_actions)
                    .any(|x| x.starts_with(p.as_str()))
            })
        })
        .collect();
    let (page, next) = page_of(&alarms, req.next_token.as_deref(), max)?;
    let mut out = json!({"MetricAlarms": page, "CompositeAlarms": []});
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DescribeAlarmsForMetricInput {
    metric_name: String,
    namespace: String,
    statistic: Option<String>,
    extended_statistic: Option<String>,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    period: Option<i64>,
    unit: Option<String>,
}

fn describe_alarms_for_metric(
    cw: &CloudWatch,
    req: DescribeAlarmsForMetricInput,
) -> CwResult<Value> {
    let dims = dimensions(&req.dimensions, "Dimensions")?;
    let alarms: Vec<Alarm> = cw
        .alarms
        .all()
        .into_iter()
        .filter(|a| {
            a.metric_name.as_ref() == Some(&req.metric_name)
                && a.namespace.as_ref() == Some(&req.namespace)
        })
        .filter(|a| {
            a.dimensions
                .iter()
                .map(|d| (d.name.clone(), d.value.clone()))
                .collect::<BTreeMap<_, _>>()
                == dims
        })
        .filter(|a| {
            req.statistic
                .as_ref()
                .is_none_or(|s| a.statistic.as_ref() == Some(s))
        })
        .filter(|a| {
            req.extended_statistic
                .as_ref()
                .is_none_or(|s| a.extended_statistic.as_ref() == Some(s))
        })
        .filter(|a| req.period.is_none_or(|p| a.period == Some(p)))
        .filter(|a| req.unit.as_ref().is_none_or(|u| a.unit.as_ref() == Some(u)))
        .collect();
    Ok(json!({"MetricAlarms": alarms}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DescribeAlarmHistoryInput {
    alarm_name: Option<String>,
    #[allow(dead_code)]
    alarm_contributor_id: Option<String>,
    alarm_types: Option<Vec<String>>,
    history_item_type: Option<String>,
    start_date: Option<f64>,
    end_date: Option<f64>,
    max_records: Option<i64>,
    next_token: Option<String>,
    scan_by: Option<String>,
}

fn describe_alarm_history(cw: &CloudWatch, req: DescribeAlarmHistoryInput) -> CwResult<Value> {
    let max = match req.max_records {
        None => 100,
        Some(n @ 1..=100) => n as usize,
        Some(n) => return Err(invalid(format!("MaxRecords {n} must be between 1 and 100"))),
    };
    let metric_alarms_asked = req
        .alarm_types
        .as_ref()
        .is_none_or(|t| t.iter().any(|x| x == "MetricAlarm"));
    let mut items: Vec<_> = cw
        .alarms
        .history()
        .into_iter()
        .filter(|_| metric_alarms_asked)
        .filter(|h| req.alarm_name.as_ref().is_none_or(|n| *n == h.alarm_name))
        .filter(|h| {
            req.history_item_type
                .as_ref()
                .is_none_or(|t| *t == h.history_item_type)
        })
        .filter(|h| req.start_date.is_none_or(|s| h.timestamp >= s))
        .filter(|h| req.end_date.is_none_or(|e| h.timestamp <= e))
        .collect();
    // TimestampDescending by default, as CloudWatch.
    if req.scan_by.as_deref() != Some("TimestampAscending") {
        items.reverse();
    }
    let (page, next) = page_of(&items, req.next_token.as_deref(), max)?;
    let mut out = json!({"AlarmHistoryItems": page});
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn put(m: &CloudWatch, body: Value) -> CwResult<Value> {
        call(m, "PutMetricData", body, NOW)
    }

    fn cw() -> CloudWatch {
        CloudWatch {
            metrics: std::sync::Arc::new(Metrics::new()),
            alarms: super::super::Alarms::open(None, "us-east-1", "000000000000").unwrap(),
        }
    }

    fn alarm_on(name: &str, stat: Value, extra: Value) -> Value {
        let mut req = json!({"AlarmName": name, "Namespace": "App", "MetricName": "Latency",
            "Period": 60, "EvaluationPeriods": 1, "Threshold": 100.0,
            "ComparisonOperator": "GreaterThanThreshold"});
        for (k, v) in stat
            .as_object()
            .into_iter()
            .chain(extra.as_object())
            .flatten()
        {
            req[k] = v.clone();
        }
        req
    }

    #[test]
    fn a_percentile_alarm_with_ignore_keeps_its_state_while_samples_are_few() {
        let m = cw();
        let p90 = json!({"ExtendedStatistic": "p90"});
        for (name, extra) in [
            (
                "ignore",
                json!({"EvaluateLowSampleCountPercentile": "ignore"}),
            ),
            (
                "evaluate",
                json!({"EvaluateLowSampleCountPercentile": "evaluate"}),
            ),
            ("omitted", json!({})),
        ] {
            call(
                &m,
                "PutMetricAlarm",
                alarm_on(name, p90.clone(), extra),
                NOW,
            )
            .unwrap();
        }
        let e = call(
            &m,
            "PutMetricAlarm",
            alarm_on(
                "bad",
                p90.clone(),
                json!({"EvaluateLowSampleCountPercentile": "skip"}),
            ),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.query_code(), "InvalidParameterValue");
        assert!(
            e.message().contains("EvaluateLowSampleCountPercentile"),
            "{e}"
        );
        // p90 needs 10 / (1 - 0.9) = 100 samples: 5 of 500 ms are too few for `ignore`.
        let minute = NOW - NOW % 60_000;
        let at = (minute + 1_000) as f64 / 1000.0;
        put(
            &m,
            json!({"Namespace": "App", "MetricData": [{"MetricName": "Latency",
                "Timestamp": at, "Values": [500.0], "Counts": [5.0]}]}),
        )
        .unwrap();
        let states = |m: &CloudWatch| -> BTreeMap<String, String> {
            m.alarms
                .all()
                .into_iter()
                .map(|a| (a.alarm_name, a.state_value))
                .collect()
        };
        m.alarms.evaluate(&m.metrics, minute + 60_500).unwrap();
        let now = states(&m);
        assert_eq!(now["ignore"], "INSUFFICIENT_DATA");
        assert_eq!(now["evaluate"], "ALARM");
        assert_eq!(now["omitted"], "ALARM");
        // 150 samples in the next minute: enough, `ignore` evaluates too.
        let at = (minute + 61_000) as f64 / 1000.0;
        put(
            &m,
            json!({"Namespace": "App", "MetricData": [{"MetricName": "Latency",
                "Timestamp": at, "Values": [500.0], "Counts": [150.0]}]}),
        )
        .unwrap();
        m.alarms.evaluate(&m.metrics, minute + 120_500).unwrap();
        assert_eq!(states(&m)["ignore"], "ALARM");
        // DescribeAlarms shows the member as given.
        let d = call(
            &m,
            "DescribeAlarms",
            json!({"AlarmNames": ["ignore", "omitted"]}),
            NOW,
        )
        .unwrap();
        assert_eq!(
            d["MetricAlarms"][0]["EvaluateLowSampleCountPercentile"],
            "ignore"
        );
        assert!(
            d["MetricAlarms"][1]
                .get("EvaluateLowSampleCountPercentile")
                .is_none()
        );
    }

    #[test]
    fn an_alarm_s_tags_are_kept_from_its_creation_and_changed_by_tag_and_untag() {
        let m = cw();
        let avg = json!({"Statistic": "Average"});
        let tags =
            json!({"Tags": [{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "prod"}]});
        call(
            &m,
            "PutMetricAlarm",
            alarm_on("slow", avg.clone(), tags),
            NOW,
        )
        .unwrap();
        let arn = "arn:aws:cloudwatch:us-east-1:000000000000:alarm:slow";
        let list =
            |m: &CloudWatch| call(m, "ListTagsForResource", json!({"ResourceARN": arn}), NOW);
        assert_eq!(
            list(&m).unwrap(),
            json!({"Tags": [{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "prod"}]})
        );
        // DescribeAlarms' MetricAlarm has no Tags member.
        let d = call(&m, "DescribeAlarms", json!({}), NOW).unwrap();
        assert!(d["MetricAlarms"][0].get("Tags").is_none(), "{d}");
        // Updating the alarm ignores its Tags (PutMetricAlarm's reference).
        let other = json!({"Tags": [{"Key": "team", "Value": "api"}]});
        call(
            &m,
            "PutMetricAlarm",
            alarm_on("slow", avg.clone(), other),
            NOW,
        )
        .unwrap();
        assert_eq!(list(&m).unwrap()["Tags"][0]["Value"], "web");
        call(
            &m,
            "TagResource",
            json!({"ResourceARN": arn, "Tags": [{"Key": "team", "Value": "api"}, {"Key": "tier", "Value": "1"}]}),
            NOW,
        )
        .unwrap();
        call(
            &m,
            "UntagResource",
            json!({"ResourceARN": arn, "TagKeys": ["env"]}),
            NOW,
        )
        .unwrap();
        assert_eq!(
            list(&m).unwrap(),
            json!({"Tags": [{"Key": "team", "Value": "api"}, {"Key": "tier", "Value": "1"}]})
        );
        // Refused as CloudWatch refuses: more than 50, a key given twice; an ARN of nothing.
        let many: Vec<Value> = (0..51)
            .map(|i| json!({"Key": format!("k{i}"), "Value": ""}))
            .collect();
        let e = call(
            &m,
            "PutMetricAlarm",
            alarm_on("many", avg.clone(), json!({"Tags": many})),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.query_code(), "InvalidParameterValue");
        assert!(call(&m, "DescribeAlarms", json!({"AlarmNames": ["many"]}), NOW).unwrap()
            ["MetricAlarms"].as_array().unwrap().is_empty());
        let e = call(
            &m,
            "ListTagsForResource",
            json!({"ResourceARN": "arn:aws:cloudwatch:us-east-1:000000000000:alarm:nope"}),
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            (e.name(), e.query_code(), e.status()),
            (
                "ResourceNotFoundException",
                "ResourceNotFoundException",
                404
            )
        );
        // Deleted with its alarm.
        call(&m, "DeleteAlarms", json!({"AlarmNames": ["slow"]}), NOW).unwrap();
        assert!(list(&m).is_err());
    }

    #[test]
    fn statistics_of_put_values_per_period_as_cloudwatch_aggregates_them() {
        let m = cw();
        let t = (NOW - 600_000) as f64 / 1000.0;
        put(
            &m,
            json!({"Namespace": "App", "MetricData": [
                {"MetricName": "Latency", "Dimensions": [{"Name": "Svc", "Value": "web"}],
                 "Timestamp": t, "Value": 10.0, "Unit": "Milliseconds"},
                {"MetricName": "Latency", "Dimensions": [{"Name": "Svc", "Value": "web"}],
                 "Timestamp": t + 1.0, "Values": [20.0, 30.0], "Counts": [1.0, 2.0],
                 "Unit": "Milliseconds"},
                {"MetricName": "Latency", "Dimensions": [{"Name": "Svc", "Value": "api"}],
                 "Timestamp": t, "Value": 99.0, "Unit": "Milliseconds"}]}),
        )
        .unwrap();
        let got = call(
            &m,
            "GetMetricStatistics",
            json!({"Namespace": "App", "MetricName": "Latency",
                   "Dimensions": [{"Name": "Svc", "Value": "web"}],
                   "StartTime": t - 60.0, "EndTime": t + 300.0, "Period": 300,
                   "Statistics": ["SampleCount", "Average", "Sum", "Minimum", "Maximum"]}),
            NOW,
        )
        .unwrap();
        let dp = &got["Datapoints"];
        assert_eq!(dp.as_array().unwrap().len(), 1, "{got}");
        assert_eq!(dp[0]["SampleCount"], 4.0);
        // 10 + 20 + 30 × 2.
        assert_eq!(dp[0]["Sum"], 90.0);
        assert_eq!(dp[0]["Average"], 22.5);
        assert_eq!(
            (dp[0]["Minimum"].clone(), dp[0]["Maximum"].clone()),
            (json!(10.0), json!(30.0))
        );
        assert_eq!(dp[0]["Unit"], "Milliseconds");
        let p = call(
            &m,
            "GetMetricStatistics",
            json!({"Namespace": "App", "MetricName": "Latency",
                   "Dimensions": [{"Name": "Svc", "Value": "web"}],
                   "StartTime": t - 60.0, "EndTime": t + 300.0, "Period": 300,
                   "ExtendedStatistics": ["p50", "p99"]}),
            NOW,
        )
        .unwrap();
        assert_eq!(
            p["Datapoints"][0]["ExtendedStatistics"],
            json!({"p50": 20.0, "p99": 30.0})
        );
    }

    #[test]
    fn put_metric_data_refuses_what_cloudwatch_refuses_and_stores_nothing_then() {
        let m = cw();
        let bad = [
            (
                json!({"Namespace": "AWS/ECS", "MetricData": [{"MetricName": "a", "Value": 1}]}),
                "InvalidParameterValue",
            ),
            (
                json!({"MetricData": [{"MetricName": "a", "Value": 1}]}),
                "MissingParameter",
            ),
            (
                json!({"Namespace": "A", "MetricData": [{"MetricName": "a", "Value": 1, "StatisticValues": {"SampleCount": 1, "Sum": 1, "Minimum": 1, "Maximum": 1}}]}),
                "InvalidParameterCombination",
            ),
            (
                json!({"Namespace": "A", "MetricData": [{"MetricName": "a", "Value": "NaN"}]}),
                "InvalidParameterValue",
            ),
            (
                json!({"Namespace": "A", "MetricData": [{"MetricName": "a", "Value": 1, "Unit": "Furlongs"}]}),
                "InvalidParameterValue",
            ),
            (
                json!({"Namespace": "A", "MetricData": [{"MetricName": "a", "Value": 1, "StorageResolution": 5}]}),
                "InvalidParameterValue",
            ),
            (
                json!({"Namespace": "A", "MetricData": [{"MetricName": "a", "Value": 1, "Timestamp": (NOW / 1000 - 15 * 86400) as f64}]}),
                "InvalidParameterValue",
            ),
            (
                json!({"Namespace": "A", "MetricData": [{"MetricName": "ok", "Value": 1}, {"MetricName": "b", "Values": [1, 2], "Counts": [1]}]}),
                "InvalidParameterCombination",
            ),
            (
                json!({"Namespace": "A", "MetricData": [{"MetricName": "a", "Value": 1, "Colour": "red"}]}),
                "SerializationException",
            ),
        ];
        for (body, code) in bad {
            let e = put(&m, body.clone()).unwrap_err();
            assert_eq!(e.query_code(), code, "{body}: {e}");
        }
        assert!(
            m.metrics.list(0).is_empty(),
            "a refused request stored nothing"
        );
    }

    #[test]
    fn get_metric_data_pages_and_orders_and_list_metrics_filters_by_dimension() {
        let m = cw();
        let base = NOW - 3_600_000;
        let data: Vec<Value> = (0..10)
            .map(|i| json!({"MetricName": "Req", "Dimensions": [{"Name": "Svc", "Value": "web"}, {"Name": "Az", "Value": "a"}],
                            "Timestamp": (base + i * 60_000) as f64 / 1000.0, "Value": i as f64}))
            .collect();
        put(&m, json!({"Namespace": "App", "MetricData": data})).unwrap();
        let q = |extra: Value| {
            let mut body = json!({"MetricDataQueries": [{"Id": "r", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Req",
                "Dimensions": [{"Name": "Az", "Value": "a"}, {"Name": "Svc", "Value": "web"}]}, "Period": 60, "Stat": "Sum"}}],
                "StartTime": base as f64 / 1000.0, "EndTime": NOW as f64 / 1000.0});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            call(&m, "GetMetricData", body, NOW).unwrap()
        };
        let all = q(json!({}));
        assert_eq!(
            all["MetricDataResults"][0]["Values"],
            json!([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
        );
        assert_eq!(all["MetricDataResults"][0]["Label"], "Req");
        let first = q(json!({"ScanBy": "TimestampAscending", "MaxDatapoints": 4}));
        assert_eq!(
            first["MetricDataResults"][0]["Values"],
            json!([0.0, 1.0, 2.0, 3.0])
        );
        assert_eq!(first["MetricDataResults"][0]["StatusCode"], "PartialData");
        let next = q(
            json!({"ScanBy": "TimestampAscending", "MaxDatapoints": 4, "NextToken": first["NextToken"]}),
        );
        assert_eq!(
            next["MetricDataResults"][0]["Values"],
            json!([4.0, 5.0, 6.0, 7.0])
        );
        let e = call(
            &m,
            "GetMetricData",
            json!({"MetricDataQueries": [{"Id": "e", "Expression": "ANOMALY_DETECTION_BAND(r)"}],
            "StartTime": 0, "EndTime": 1}),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.query_code(), "ValidationError");
        let l = call(
            &m,
            "ListMetrics",
            json!({"Dimensions": [{"Name": "Az"}]}),
            NOW,
        )
        .unwrap();
        assert_eq!(l["Metrics"].as_array().unwrap().len(), 1);
        assert_eq!(
            l["Metrics"][0]["Dimensions"],
            json!([{"Name": "Az", "Value": "a"}, {"Name": "Svc", "Value": "web"}])
        );
        let l = call(
            &m,
            "ListMetrics",
            json!({"Dimensions": [{"Name": "Az", "Value": "b"}]}),
            NOW,
        )
        .unwrap();
        assert_eq!(l["Metrics"], json!([]));
    }

    /// Metric math: expressions over ids and other expressions (in any order), arrays
    /// with one result per series under the expression's Id, ReturnData false left out;
    /// a scalar result, a cycle and an unknown id are ValidationErrors.
    #[test]
    fn get_metric_data_evaluates_expressions_and_respects_return_data() {
        let m = cw();
        let base = NOW - 600_000;
        let data: Vec<Value> = (0..4)
            .flat_map(|i| {
                let at = (base + i * 60_000) as f64 / 1000.0;
                [
                    json!({"MetricName": "Errors", "Timestamp": at, "Value": i as f64}),
                    json!({"MetricName": "Requests", "Timestamp": at, "Value": 10.0}),
                ]
            })
            .collect();
        put(&m, json!({"Namespace": "App", "MetricData": data})).unwrap();
        let stat = |id: &str, name: &str| {
            json!({"Id": id, "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "App",
                "MetricName": name}, "Period": 60, "Stat": "Sum"}})
        };
        let q = |queries: Value| {
            call(
                &m,
                "GetMetricData",
                json!({"MetricDataQueries": queries, "ScanBy": "TimestampAscending",
                       "StartTime": base as f64 / 1000.0, "EndTime": NOW as f64 / 1000.0}),
                NOW,
            )
        };
        let got = q(json!([
            {"Id": "pct", "Expression": "rate * 100", "Label": "Error rate"},
            stat("errors", "Errors"),
            stat("requests", "Requests"),
            {"Id": "rate", "Expression": "errors / requests", "ReturnData": false},
            {"Id": "scaled", "Expression": "METRICS() * 2", "Label": "Twice"},
        ]))
        .unwrap();
        let r = got["MetricDataResults"].as_array().unwrap();
        assert_eq!(r.len(), 3, "pct, and scaled's two series: {got}");
        assert_eq!(r[0]["Id"], "pct");
        assert_eq!(r[0]["Label"], "Error rate");
        assert_eq!(r[0]["Values"], json!([0.0, 10.0, 20.0, 30.0]));
        assert_eq!(
            (r[1]["Id"].clone(), r[2]["Id"].clone()),
            (json!("scaled"), json!("scaled"))
        );
        assert_eq!(r[1]["Label"], "Twice Errors");
        assert_eq!(r[2]["Values"], json!([20.0, 20.0, 20.0, 20.0]));
        for (queries, says) in [
            (
                json!([stat("errors", "Errors"), {"Id": "e", "Expression": "SUM(errors)"}]),
                "not a scalar",
            ),
            (
                json!([{"Id": "a", "Expression": "b + 1"}, {"Id": "b", "Expression": "a + 1"}]),
                "cycle",
            ),
            (
                json!([{"Id": "a", "Expression": "nothing * 2"}]),
                "Unrecognized id nothing",
            ),
            (
                json!([{"Id": "a", "Expression": "SEARCH('x', 'Sum', 60)"}]),
                "Unsupported function SEARCH",
            ),
        ] {
            let e = q(queries).unwrap_err();
            assert_eq!(e.query_code(), "ValidationError", "{e}");
            assert!(e.message().contains(says), "{e}");
            assert!(e.message().starts_with("Error in expression "), "{e}");
        }
    }

    /// Each operation served is the model's; each exception is a shape of the model with
    /// the query code answered; every timestamp member of the served operations' outputs
    /// is one the CBOR encoder tags.
    #[test]
    fn operations_errors_and_timestamps_are_the_model_s() {
        let m = crate::ecs::botocore_model::model_of("cloudwatch", "2010-08-01");
        assert_eq!(
            m["metadata"]["targetPrefix"], "GraniteServiceVersion20100801",
            "api::protocol's row"
        );
        assert_eq!(m["metadata"]["protocols"][0], "smithy-rpc-v2-cbor");
        let shapes = &m["shapes"];
        for op in OPERATIONS {
            let o = &m["operations"][op];
            assert!(o.is_object(), "{op} is not in CloudWatch's model");
            let Some(out) = o["output"]["shape"].as_str() else {
                continue;
            };
            let mut stack = vec![out.to_string()];
            let mut seen = std::collections::HashSet::new();
            while let Some(name) = stack.pop() {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let s = &shapes[&name];
                for (member, v) in s["members"].as_object().into_iter().flatten() {
                    let target = v["shape"].as_str().unwrap();
                    let t = &shapes[target];
                    let is_ts = t["type"] == "timestamp"
                        || (t["type"] == "list"
                            && shapes[t["member"]["shape"].as_str().unwrap()]["type"]
                                == "timestamp");
                    if is_ts {
                        assert!(
                            TIMESTAMP_MEMBERS.contains(&member.as_str()),
                            "{op}: {name}.{member} is a timestamp"
                        );
                    }
                    stack.push(target.to_string());
                }
                if let Some(inner) = s["member"]["shape"].as_str() {
                    stack.push(inner.to_string());
                }
                if let Some(inner) = s["value"]["shape"].as_str() {
                    stack.push(inner.to_string());
                }
            }
        }
        for e in [
            CwError::InvalidParameterValue(String::new()),
            CwError::MissingParameter(String::new()),
            CwError::InvalidParameterCombination(String::new()),
            CwError::InvalidNextToken(String::new()),
            CwError::ResourceNotFoundException(String::new()),
            CwError::Internal(String::new()),
        ] {
            let s = &shapes[e.name()];
            assert_eq!(s["exception"], true, "{} is an exception shape", e.name());
            assert_eq!(s["error"]["code"], e.query_code(), "{}", e.name());
            assert_eq!(
                s["error"]["httpStatusCode"].as_u64(),
                Some(u64::from(e.status())),
                "{}",
                e.name()
            );
        }
    }
}
