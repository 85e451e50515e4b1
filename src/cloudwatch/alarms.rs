//! CloudWatch metric alarms: PutMetricAlarm, DescribeAlarms, DescribeAlarmsForMetric,
//! DeleteAlarms, SetAlarmState, DescribeAlarmHistory, Enable/DisableAlarmActions, and
//! their evaluation against the box's [`Metrics`] once a metric period.
//!
//! Evaluation (CloudWatch User Guide, "Using Amazon CloudWatch alarms": "Evaluating an
//! alarm", "Configuring how CloudWatch alarms treat missing data"): the metric's statistic
//! (or, for an alarm on metric math, the query of its `Metrics` that returns data,
//! evaluated as GetMetricData evaluates it: [`query`]) over the complete periods of the
//! alarm's evaluation range, judged by [`super::evaluation::judge`] (`EvaluationPeriods`,
//! `DatapointsToAlarm`, `TreatMissingData` as the guide's tables say).
//!
//! Alarms are kept in `<root>/cloudwatch/alarms.json` (written whole, temp + rename, at
//! each change; in `serve --cluster`, in the rows the serves share,
//! `crate::store::json_state`, and evaluated by the leader) with their history (the last 100 items an alarm, CloudWatch keeps 30
//! days); actions naming an Application Auto Scaling policy (in `AlarmActions`,
//! `OKActions` or `InsufficientDataActions`) are carried out by `autoscaling::scaling`
//! after each evaluation, others are stored and said, not carried out
//! (docs/cloudwatch.md).

use super::metrics::{MetricId, Millis};
use super::query::{self, MetricDataQuery};
use super::{CwError, CwResult, Metrics};
use crate::store::json_state::Held;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// An alarm's history is kept to this many items.
const HISTORY_KEPT: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// A tag of an alarm (the model's `Tag`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// An alarm's tags: at most 50, keys of 1–128 characters, unique, values of at most 256
/// (the model's `TagKey`, `TagValue`; PutMetricAlarm's `Tags`: "as many as 50 tags").
fn checked_tags(tags: &[Tag]) -> CwResult<()> {
    let invalid = |m: String| Err(CwError::InvalidParameterValue(m));
    if tags.len() > 50 {
        return invalid(format!(
            "An alarm can have at most 50 tags ({} given)",
            tags.len()
        ));
    }
    for (i, t) in tags.iter().enumerate() {
        let k = t.key.chars().count();
        if !(1..=128).contains(&k) || t.value.chars().count() > 256 {
            return invalid(format!(
                "Tag {:?}: a key has 1 to 128 characters, a value at most 256",
                t.key
            ));
        }
        if tags[..i].iter().any(|o| o.key == t.key) {
            return invalid(format!("Tag key {:?} is given more than once", t.key));
        }
    }
    Ok(())
}

/// The fewest samples a percentile's alarm with `EvaluateLowSampleCountPercentile`
/// `ignore` evaluates. Ref: CloudWatch User Guide, "Percentile-based alarms and low data
/// samples": "For percentiles between 0.5 (inclusive) and 1.00 (exclusive), this setting
/// is used when there are fewer than 10/(1-percentile) data points during the evaluation
/// period … For percentiles between 0 and 0.5 (exclusive), … fewer than 10/percentile";
/// p0 and p100 are in neither range.
fn low_sample_minimum(stat: &str) -> Option<f64> {
    let super::metrics::Stat::Percentile(p) = super::metrics::Stat::parse(stat)? else {
        return None;
    };
    let q = p / 100.0;
    if (0.5..1.0).contains(&q) {
        Some(10.0 / (1.0 - q))
    } else if q > 0.0 && q < 0.5 {
        Some(10.0 / q)
    } else {
        None
    }
}

/// A metric alarm: the model's `MetricAlarm` members this host keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alarm {
    pub alarm_name: String,
    pub alarm_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_description: Option<String>,
    pub alarm_configuration_updated_timestamp: f64,
    pub actions_enabled: bool,
    #[serde(rename = "OKActions")]
    pub ok_actions: Vec<String>,
    pub alarm_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    pub state_value: String,
    pub state_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason_data: Option<String>,
    pub state_updated_timestamp: f64,
    pub state_transitioned_timestamp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_statistic: Option<String>,
    pub dimensions: Vec<Dimension>,
    /// Absent for an alarm on metric math (its queries carry the periods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// An alarm on metric math: its queries, as PutMetricAlarm's `Metrics` gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricDataQuery>>,
    pub evaluation_periods: i64,
    pub datapoints_to_alarm: i64,
    pub threshold: f64,
    pub comparison_operator: String,
    pub treat_missing_data: String,
    /// `evaluate` or `ignore` as given (omitted: evaluate); used by percentile alarms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate_low_sample_count_percentile: Option<String>,
}

impl Alarm {
    /// The actions of the alarm's state: `AlarmActions` in ALARM, `OKActions` in OK,
    /// `InsufficientDataActions` in INSUFFICIENT_DATA (PutMetricAlarm's reference: "The
    /// actions to execute when this alarm transitions to the … state").
    pub fn actions_of_state(&self) -> &[String] {
        match self.state_value.as_str() {
            "ALARM" => &self.alarm_actions,
            "OK" => &self.ok_actions,
            _ => &self.insufficient_data_actions,
        }
    }

    /// Whether value `v` breaches the alarm's threshold.
    fn breaches(&self, v: f64) -> bool {
        match self.comparison_operator.as_str() {
            "GreaterThanOrEqualToThreshold" => v >= self.threshold,
            "GreaterThanThreshold" => v > self.threshold,
            "LessThanThreshold" => v < self.threshold,
            _ => v <= self.threshold,
        }
    }

    /// The period the alarm is evaluated at, in seconds: its `Period`, or for an alarm
    /// on metric math that of the query it watches ([`returned_period`]).
    pub fn evaluation_period(&self) -> i64 {
        match (&self.metrics, self.period) {
            (Some(q), _) => returned_period(q).unwrap_or(60),
            (None, p) => p.unwrap_or(60),
        }
    }
}

/// The query of an alarm's `Metrics` whose `ReturnData` is true (omitted counts as true,
/// as the model documents for MetricDataQuery), when exactly one is.
fn returned(queries: &[MetricDataQuery]) -> Option<&MetricDataQuery> {
    let mut r = queries.iter().filter(|q| q.return_data.unwrap_or(true));
    match (r.next(), r.next()) {
        (Some(q), None) => Some(q),
        _ => None,
    }
}

/// The period of the query an alarm on metric math watches, in seconds: a MetricStat's
/// `Period`; an expression's own `Period`, else the shortest of the MetricStat periods
/// (the grid GetMetricData gives an expression), else a minute.
fn returned_period(queries: &[MetricDataQuery]) -> Option<i64> {
    let q = returned(queries)?;
    Some(match (&q.metric_stat, q.period) {
        (Some(ms), _) => ms.period?,
        (None, Some(p)) => p,
        (None, None) => queries
            .iter()
            .filter_map(|q| q.metric_stat.as_ref().and_then(|m| m.period))
            .min()
            .unwrap_or(60),
    })
}

/// Checks an alarm's `Metrics` as CloudWatch does and answers the period it is evaluated
/// at (seconds). Refused: more than 20 queries, 10 MetricStat or 10 expressions
/// (MetricDataQuery's reference: "as many as 10 structures that contain a MetricStat
/// parameter … and as many as 10 … the Expression parameter"), not exactly one with
/// `ReturnData` true (CloudWatch's `ValidationError` "Exactly one element of the metrics
/// list should return data."), a query GetMetricData would refuse (ids, a missing
/// MetricStat `Period`, statistics, expressions: each period an alarm's), and a watched
/// expression whose result is not one time series ("Any expression used in a
/// PutMetricAlarm operation must return a single time series").
fn math_period(
    queries: &[MetricDataQuery],
    check_period: &query::PeriodCheck,
    now: Millis,
) -> CwResult<i64> {
    let stats = queries.iter().filter(|q| q.metric_stat.is_some()).count();
    let exprs = queries.iter().filter(|q| q.expression.is_some()).count();
    if queries.is_empty() || queries.len() > 20 || stats > 10 || exprs > 10 {
        return Err(CwError::InvalidParameterValue(format!(
            "The collection Metrics must have between 1 and 20 members, at most 10 with a \
             MetricStat and at most 10 with an Expression (got {} members: {stats} MetricStat, \
             {exprs} Expression)",
            queries.len()
        )));
    }
    let Some(watched) = returned(queries) else {
        return Err(CwError::Validation(
            "Exactly one element of the metrics list should return data.".into(),
        ));
    };
    // The queries are checked (and a watched expression's result seen) by evaluating them
    // once over no data.
    let end = now as f64 / 1000.0;
    let values = query::evaluate(
        &Metrics::new(),
        queries,
        "Metrics",
        check_period,
        (end - 3600.0, end),
        now,
    )?;
    let shape = match values.get(&watched.id) {
        Some(super::math::Value::Series(_)) => None,
        Some(super::math::Value::Array(_)) => Some("an array of time series"),
        Some(super::math::Value::Scalar(_)) => Some("a scalar"),
        None => Some("nothing"),
    };
    if let Some(shape) = shape {
        return Err(CwError::Validation(format!(
            "Error in expression {}: an alarm's expression must return a single time \
             series, not {shape}",
            watched.id
        )));
    }
    let p = returned_period(queries).unwrap_or(60);
    if let Some(p) = watched.period {
        check_period(p, "Metrics.Period")?;
    }
    Ok(p)
}

/// One item of an alarm's history (the model's `AlarmHistoryItem`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    pub alarm_name: String,
    pub alarm_type: String,
    pub timestamp: f64,
    pub history_item_type: String,
    pub history_summary: String,
    pub history_data: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Saved {
    alarms: BTreeMap<String, Alarm>,
    history: Vec<HistoryItem>,
    /// Each alarm's tags, by alarm name (not a member of DescribeAlarms' `MetricAlarm`:
    /// ListTagsForResource answers them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, Vec<Tag>>,
}

/// How the alarms are kept in a cluster's rows: an alarm's history in one item.
const GROUPS: &[crate::store::json_state::Group] = &[crate::store::json_state::Group {
    field: "history",
    by: "AlarmName",
    order: "Timestamp",
}];

/// The box's (in `serve --cluster`, the cluster's) alarms.
#[derive(Debug)]
pub struct Alarms {
    held: Held<Saved>,
    arn_prefix: String,
}

fn secs(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

impl Alarms {
    /// The alarms kept under `root` (None: in memory only, for unit tests); an
    /// undecodable file is an error naming it, never an empty set.
    pub fn open(root: Option<&std::path::Path>, region: &str, account: &str) -> CwResult<Alarms> {
        Self::open_kept(root, region, account, false)
    }

    /// `serve --cluster`: the alarms the cluster's serves share, kept in the store's
    /// replicated rows under `root` (`crate::store::json_state`).
    pub fn open_shared(root: &std::path::Path, region: &str, account: &str) -> CwResult<Alarms> {
        Self::open_kept(Some(root), region, account, true)
    }

    fn open_kept(
        root: Option<&std::path::Path>,
        region: &str,
        account: &str,
        rows: bool,
    ) -> CwResult<Alarms> {
        let file = "cloudwatch/alarms.json";
        let held = Held::open(root, file, "alarms", GROUPS, rows, "CloudWatch alarms")
            .map_err(|e| CwError::Internal(crate::errors::error_chain(&e)))?;
        Ok(Alarms {
            held,
            arn_prefix: format!("arn:aws:cloudwatch:{region}:{account}:alarm:"),
        })
    }

    /// The alarms, as another serve of the cluster may have changed them.
    fn lock(&self) -> std::sync::MutexGuard<'_, Saved> {
        self.held.lock()
    }

    fn save(&self, s: &Saved) -> CwResult<()> {
        self.held
            .save(s)
            .map_err(|e| CwError::Internal(crate::errors::error_chain(&e)))
    }

    fn record(s: &mut Saved, item: HistoryItem) {
        s.history.push(item);
        let name = s
            .history
            .last()
            .map(|h| h.alarm_name.clone())
            .unwrap_or_default();
        let of_alarm = s.history.iter().filter(|h| h.alarm_name == name).count();
        if of_alarm > HISTORY_KEPT
            && let Some(i) = s.history.iter().position(|h| h.alarm_name == name)
        {
            s.history.remove(i);
        }
    }

    /// PutMetricAlarm: creates or replaces the alarm (a replaced alarm keeps its state).
    pub fn put(&self, req: PutMetricAlarmInput, now: Millis) -> CwResult<()> {
        self.put_with(req, now, false)
    }

    /// An alarm another service makes for itself (Application Auto Scaling's target
    /// tracking alarms): as PutMetricAlarm, but its `Period` may be the box's metric
    /// period (`MINIFARGATE_METRICS_PERIOD`, 1 or 5 s included), the period AWS's 60 s is
    /// scaled to. Returns the alarm's ARN.
    pub fn put_managed(&self, req: PutMetricAlarmInput, now: Millis) -> CwResult<String> {
        let name = req.alarm_name.clone();
        self.put_with(req, now, true)?;
        Ok(format!("{}{name}", self.arn_prefix))
    }

    fn put_with(&self, req: PutMetricAlarmInput, now: Millis, box_period: bool) -> CwResult<()> {
        let tags = req.tags.clone().unwrap_or_default();
        checked_tags(&tags)?;
        let a = self.checked(req, now, box_period)?;
        let mut s = self.lock();
        // Ref: PutMetricAlarm `Tags`: "If you are using this operation to update an existing
        // alarm, any tags you specify in this parameter are ignored" (TagResource and
        // UntagResource change them).
        if !s.alarms.contains_key(&a.alarm_name) && !tags.is_empty() {
            s.tags.insert(a.alarm_name.clone(), tags);
        }
        let (summary, kept) = match s.alarms.get(&a.alarm_name) {
            Some(old) => (
                format!("Alarm \"{}\" updated", a.alarm_name),
                Some(old.clone()),
            ),
            None => (format!("Alarm \"{}\" created", a.alarm_name), None),
        };
        let mut a = a;
        if let Some(old) = kept {
            a.state_value = old.state_value;
            a.state_reason = old.state_reason;
            a.state_reason_data = old.state_reason_data;
            a.state_updated_timestamp = old.state_updated_timestamp;
            a.state_transitioned_timestamp = old.state_transitioned_timestamp;
        }
        let data = json!({"version": "1.0", "type": if summary.ends_with("created") { "Create" } else { "Update" },
                          "updatedAlarm": serde_json::to_value(&a).unwrap_or_default()});
        Self::record(
            &mut s,
            HistoryItem {
                alarm_name: a.alarm_name.clone(),
                alarm_type: "MetricAlarm".into(),
                timestamp: secs(now),
                history_item_type: "ConfigurationUpdate".into(),
                history_summary: summary,
                history_data: data.to_string(),
            },
        );
        s.alarms.insert(a.alarm_name.clone(), a);
        self.save(&s)
    }

    fn checked(&self, req: PutMetricAlarmInput, now: Millis, box_period: bool) -> CwResult<Alarm> {
        let invalid = |m: String| CwError::InvalidParameterValue(m);
        if req.alarm_name.is_empty() || req.alarm_name.chars().count() > 255 {
            return Err(invalid(
                "The parameter AlarmName must be between 1 and 255 characters long".into(),
            ));
        }
        if req.threshold_metric_id.is_some() {
            return Err(invalid(
                "ThresholdMetricId (an alarm on an anomaly detection band) is not evaluated by \
                 minifargate: no anomaly models (docs/cloudwatch.md)"
                    .into(),
            ));
        }
        let (namespace, metric_name, period) = checked_metric(&req, now, box_period)?;
        let (evaluation_periods, datapoints_to_alarm, threshold, comparison_operator) =
            checked_evaluation(&req, period)?;
        checked_statistic(&req)?;
        let treat_missing_data = checked_missing_data(&req)?;
        if req.dimensions.len() > 30 {
            return Err(invalid(
                "The collection Dimensions must not have a size greater than 30.".into(),
            ));
        }
        say_actions_not_run(&req);
        Ok(Alarm {
            alarm_arn: format!("{}{}", self.arn_prefix, req.alarm_name),
            alarm_name: req.alarm_name,
            alarm_description: req.alarm_description,
            alarm_configuration_updated_timestamp: secs(now),
            actions_enabled: req.actions_enabled.unwrap_or(true),
            ok_actions: req.ok_actions,
            alarm_actions: req.alarm_actions,
            insufficient_data_actions: req.insufficient_data_actions,
            state_value: "INSUFFICIENT_DATA".into(),
            state_reason: "Unchecked: Initial alarm creation".into(),
            state_reason_data: None,
            state_updated_timestamp: secs(now),
            state_transitioned_timestamp: secs(now),
            metric_name,
            namespace,
            statistic: req.statistic,
            extended_statistic: req.extended_statistic,
            dimensions: req.dimensions,
            period: req.metrics.is_none().then_some(period),
            unit: req.unit,
            metrics: req.metrics,
            evaluation_periods,
            datapoints_to_alarm,
            threshold,
            comparison_operator,
            treat_missing_data,
            evaluate_low_sample_count_percentile: req.evaluate_low_sample_count_percentile,
        })
    }

    /// The name of the alarm `arn` names, if it is one of this host's alarms; otherwise
    /// the tagging operations' `ResourceNotFoundException` (an ARN of another CloudWatch
    /// resource, a dashboard or an insight rule, names nothing here).
    fn alarm_of(&self, s: &Saved, arn: &str) -> CwResult<String> {
        match arn.strip_prefix(&self.arn_prefix) {
            Some(name) if s.alarms.contains_key(name) => Ok(name.to_string()),
            _ => Err(CwError::ResourceNotFoundException(format!(
                "The resource {arn} does not exist"
            ))),
        }
    }

    /// ListTagsForResource: an alarm's tags.
    pub fn tags(&self, arn: &str) -> CwResult<Vec<Tag>> {
        let s = self.lock();
        let name = self.alarm_of(&s, arn)?;
        Ok(s.tags.get(&name).cloned().unwrap_or_default())
    }

    /// TagResource: adds `tags` to an alarm, replacing the value of a key it has.
    pub fn tag(&self, arn: &str, tags: Vec<Tag>) -> CwResult<()> {
        checked_tags(&tags)?;
        let mut s = self.lock();
        let name = self.alarm_of(&s, arn)?;
        let mut all = s.tags.get(&name).cloned().unwrap_or_default();
        for t in tags {
            match all.iter_mut().find(|o| o.key == t.key) {
                Some(o) => o.value = t.value,
                None => all.push(t),
            }
        }
        checked_tags(&all)?;
        s.tags.insert(name, all);
        self.save(&s)
    }

    /// UntagResource: removes the tags of `keys` from an alarm (a key it has not is no
    /// error).
    pub fn untag(&self, arn: &str, keys: &[String]) -> CwResult<()> {
        let mut s = self.lock();
        let name = self.alarm_of(&s, arn)?;
        if let Some(all) = s.tags.get_mut(&name) {
            all.retain(|t| !keys.contains(&t.key));
            if all.is_empty() {
                s.tags.remove(&name);
            }
        }
        self.save(&s)
    }

    /// Every alarm, by name.
    pub fn all(&self) -> Vec<Alarm> {
        self.lock().alarms.values().cloned().collect()
    }

    /// Of the alarms `names`, those that went into ALARM at or after `since` (from another
    /// state: an alarm already in ALARM before does not count), in the order given; with
    /// the names no alarm has. What ECS's deployment alarms watch: "the deployment
    /// … fails when … a specified CloudWatch alarm has gone into the ALARM state" (ECS
    /// Developer Guide, deployment-alarm-failure). The history is read, not only the
    /// state, so that an ALARM an evaluation has already left (SetAlarmState's until the
    /// next evaluation) is still seen.
    pub fn went_into_alarm(&self, names: &[String], since: Millis) -> (Vec<String>, Vec<String>) {
        let s = self.lock();
        let (mut fired, mut missing) = (Vec::new(), Vec::new());
        for n in names {
            if !s.alarms.contains_key(n) {
                missing.push(n.clone());
                continue;
            }
            // Every state change is in the history (`transition`).
            let went = s.history.iter().any(|h| {
                h.alarm_name == *n
                    && h.history_item_type == "StateUpdate"
                    && h.timestamp >= secs(since)
                    && serde_json::from_str::<Value>(&h.history_data).is_ok_and(|d| {
                        d["newState"]["stateValue"] == "ALARM"
                            && d["oldState"]["stateValue"] != "ALARM"
                    })
            });
            if went {
                fired.push(n.clone());
            }
        }
        (fired, missing)
    }

    /// The longest `Period` × `EvaluationPeriods` of the alarms `names`, in milliseconds:
    /// how long a change takes to show in them (0 when none exists).
    pub fn longest_window(&self, names: &[String]) -> Millis {
        let s = self.lock();
        names
            .iter()
            .filter_map(|n| s.alarms.get(n))
            .map(|a| a.evaluation_period().max(0) * a.evaluation_periods.max(0) * 1000)
            .max()
            .unwrap_or(0)
    }

    pub fn history(&self) -> Vec<HistoryItem> {
        self.lock().history.clone()
    }

    /// DeleteAlarms: every name must exist (ResourceNotFound naming the first missing),
    /// then all go.
    pub fn delete(&self, names: &[String]) -> CwResult<()> {
        let mut s = self.lock();
        if let Some(n) = names.iter().find(|n| !s.alarms.contains_key(*n)) {
            return Err(CwError::ResourceNotFound(format!(
                "The following alarms were not found: [{n}]"
            )));
        }
        for n in names {
            s.alarms.remove(n);
            s.tags.remove(n);
            s.history.retain(|h| h.alarm_name != *n);
        }
        self.save(&s)
    }

    /// Enable/DisableAlarmActions.
    pub fn set_actions(&self, names: &[String], enabled: bool) -> CwResult<()> {
        let mut s = self.lock();
        for n in names {
            if let Some(a) = s.alarms.get_mut(n) {
                a.actions_enabled = enabled;
            }
        }
        self.save(&s)
    }

    /// SetAlarmState: the state until the next evaluation says otherwise.
    pub fn set_state(
        &self,
        name: &str,
        value: &str,
        reason: String,
        data: Option<String>,
        now: Millis,
    ) -> CwResult<()> {
        if !matches!(value, "OK" | "ALARM" | "INSUFFICIENT_DATA") {
            return Err(CwError::InvalidParameterValue(format!(
                "The value {value} for parameter StateValue is invalid: OK, ALARM or INSUFFICIENT_DATA"
            )));
        }
        if let Some(d) = &data
            && serde_json::from_str::<Value>(d).is_err()
        {
            return Err(CwError::InvalidFormat("StateReasonData is not JSON".into()));
        }
        let mut s = self.lock();
        let Some(a) = s.alarms.get(name).cloned() else {
            return Err(CwError::ResourceNotFound(format!(
                "Alarm {name} does not exist."
            )));
        };
        Self::transition(&mut s, a, value, reason, data, now);
        self.save(&s)
    }

    fn transition(
        s: &mut Saved,
        mut a: Alarm,
        value: &str,
        reason: String,
        data: Option<String>,
        now: Millis,
    ) {
        let old = a.state_value.clone();
        a.state_updated_timestamp = secs(now);
        if old != value {
            a.state_transitioned_timestamp = secs(now);
        }
        a.state_value = value.to_string();
        a.state_reason = reason.clone();
        // CloudWatch's history item carries the new state's reason data as an object.
        let mut new_state = json!({"stateValue": value, "stateReason": reason});
        if let Some(d) = data
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
        {
            new_state["stateReasonData"] = d;
        }
        a.state_reason_data = data;
        let history = json!({"version": "1.0",
            "oldState": {"stateValue": old}, "newState": new_state});
        Self::record(
            s,
            HistoryItem {
                alarm_name: a.alarm_name.clone(),
                alarm_type: "MetricAlarm".into(),
                timestamp: secs(now),
                history_item_type: "StateUpdate".into(),
                history_summary: format!("Alarm updated from {old} to {value}"),
                history_data: history.to_string(),
            },
        );
        s.alarms.insert(a.alarm_name.clone(), a);
    }

    /// Evaluates every alarm at `now` over `metrics`; returns the alarms whose state
    /// changed (name, new state).
    pub fn evaluate(&self, metrics: &Metrics, now: Millis) -> CwResult<Vec<(String, String)>> {
        let mut s = self.lock();
        let changes = changes(&s, metrics, now);
        let changed = changes
            .iter()
            .map(|(a, value, ..)| (a.alarm_name.clone(), value.to_string()))
            .collect::<Vec<_>>();
        for (a, value, reason, data) in changes {
            Self::transition(&mut s, a, value, reason, Some(data), now);
        }
        if !changed.is_empty() {
            self.save(&s)?;
        }
        Ok(changed)
    }

    /// Whether an evaluation at `now` would change an alarm's state: in a cluster, the
    /// leader takes the control plane's write lock only then.
    pub fn would_change(&self, metrics: &Metrics, now: Millis) -> bool {
        !changes(&self.lock(), metrics, now).is_empty()
    }
}

/// The alarms whose state an evaluation at `now` changes, each with its new state, reason
/// and reason data.
fn changes(
    s: &Saved,
    metrics: &Metrics,
    now: Millis,
) -> Vec<(Alarm, &'static str, String, String)> {
    s.alarms
        .values()
        .filter_map(|a| {
            let (value, reason, data) = verdict(a, metrics, now)?;
            (value != a.state_value).then(|| (a.clone(), value, reason, data))
        })
        .collect()
}

/// The state an alarm should be in at `now`, with CloudWatch's reason text and data; None
/// to keep its state (`ignore` with no data).
fn verdict(a: &Alarm, metrics: &Metrics, now: Millis) -> Option<(&'static str, String, String)> {
    let period_s = a.evaluation_period();
    let period = period_s * 1000;
    let end = now.div_euclid(period) * period;
    // The evaluation range: more periods than EvaluationPeriods (`evaluation`).
    let start = end - super::evaluation::range_len(a.evaluation_periods) * period;
    let stat = a
        .statistic
        .clone()
        .or(a.extended_statistic.clone())
        .unwrap_or_default();
    let points: BTreeMap<Millis, f64> = match &a.metrics {
        Some(queries) => math_points(queries, metrics, (start, end), now),
        None => {
            let id = MetricId {
                namespace: a.namespace.clone().unwrap_or_default(),
                name: a.metric_name.clone().unwrap_or_default(),
                dimensions: a
                    .dimensions
                    .iter()
                    .map(|d| (d.name.clone(), d.value.clone()))
                    .collect(),
            };
            let periods = metrics.query(&id, start, end, period, a.unit.as_deref());
            // `ignore`: the state does not change while the periods evaluated hold fewer
            // samples than the percentile needs (some data, too little; none at all is
            // missing data, which TreatMissingData rules).
            if a.evaluate_low_sample_count_percentile.as_deref() == Some("ignore")
                && let Some(min) = low_sample_minimum(&stat)
            {
                let n: f64 = periods.iter().map(|p| p.stats.count).sum();
                if n > 0.0 && n < min {
                    return None;
                }
            }
            periods
                .iter()
                .filter_map(|p| super::metrics::statistic(&stat, p).map(|v| (p.start, v)))
                .collect()
        }
    };
    // CloudWatch's reason data names the statistic of a single-metric alarm only.
    let stat = a.metrics.is_none().then_some(stat);
    let tidy = |mut v: Value| {
        if let Some(o) = v.as_object_mut()
            && o.get("statistic").is_some_and(Value::is_null)
        {
            o.remove("statistic");
        }
        v.to_string()
    };
    let breaches = |v: f64| a.breaches(v);
    let range: Vec<(Millis, Option<f64>)> = (0..super::evaluation::range_len(a.evaluation_periods))
        .map(|k| start + k * period)
        .map(|at| (at, points.get(&at).copied()))
        .collect();
    let judged = super::evaluation::judge(
        &range
            .iter()
            .map(|(_, v)| v.map(breaches))
            .collect::<Vec<_>>(),
        usize::try_from(a.evaluation_periods).unwrap_or(1),
        usize::try_from(a.datapoints_to_alarm).unwrap_or(1),
        &a.treat_missing_data,
    );
    let state = match judged.outcome {
        super::evaluation::Outcome::Keep => return None,
        super::evaluation::Outcome::Alarm => "ALARM",
        super::evaluation::Outcome::Ok => "OK",
        super::evaluation::Outcome::InsufficientData => "INSUFFICIENT_DATA",
    };
    // The evaluated datapoints, newest first.
    let evaluated: Vec<(Millis, f64)> = judged
        .evaluated
        .iter()
        .rev()
        .filter_map(|&i| range[i].1.map(|v| (range[i].0, v)))
        .collect();
    let reason = state_reason(a, state, &evaluated, judged.filled);
    let recent: Vec<f64> = evaluated.iter().map(|(_, v)| *v).collect();
    let data = if evaluated.is_empty() {
        json!({"version": "1.0", "queryDate": stamp(now), "statistic": stat,
            "period": period_s, "recentDatapoints": [], "threshold": a.threshold})
    } else {
        json!({"version": "1.0", "queryDate": stamp(now),
            "startDate": stamp(start), "statistic": stat, "period": period_s,
            "recentDatapoints": recent, "threshold": a.threshold,
            "evaluatedDatapoints": evaluated.iter().map(|(t, v)| json!({"timestamp": stamp(*t), "value": v})).collect::<Vec<_>>()})
    };
    Some((state, reason, tidy(data)))
}

/// CloudWatch's `StateReason` for a transition to `state` on the `evaluated` datapoints
/// (newest first), `filled` missing ones filled in by TreatMissingData.
fn state_reason(a: &Alarm, state: &str, evaluated: &[(Millis, f64)], filled: usize) -> String {
    let word = match a.comparison_operator.as_str() {
        "GreaterThanOrEqualToThreshold" => "greater than or equal to",
        "GreaterThanThreshold" => "greater than",
        "LessThanThreshold" => "less than",
        _ => "less than or equal to",
    };
    let n = a.evaluation_periods;
    let plural = |k: i64, w: &str| {
        if k == 1 {
            w.to_string()
        } else {
            format!("{w}s")
        }
    };
    let treated = if a.treat_missing_data == "breaching" {
        "Breaching"
    } else {
        "NonBreaching"
    };
    if state == "INSUFFICIENT_DATA" {
        format!(
            "Insufficient Data: {n} {} {} unknown.",
            plural(n, "datapoint"),
            if n == 1 { "was" } else { "were" }
        )
    } else if evaluated.is_empty() {
        format!(
            "Threshold Crossed: no datapoints were received for {n} {} and {n} missing {} {} \
             treated as [{treated}].",
            plural(n, "period"),
            plural(n, "datapoint"),
            if n == 1 { "was" } else { "were" },
        )
    } else {
        let shown: Vec<String> = evaluated
            .iter()
            .map(|(t, v)| format!("{v:?} ({})", stamp(*t)))
            .collect();
        let real = evaluated.len() as i64;
        let breaching_real = evaluated.iter().filter(|(_, v)| a.breaches(*v)).count();
        let filled = filled as i64;
        // ALARM counts the breaching datapoints, OK those within the threshold.
        let counted = if state == "ALARM" {
            breaching_real
        } else {
            evaluated.len() - breaching_real
        };
        format!(
            "Threshold Crossed: {} {} [{}] {} {} the threshold ({:?}){} (minimum {} {} for {} \
             transition).",
            if real == 1 {
                "1".to_string()
            } else {
                format!("{counted} out of the last {real}")
            },
            plural(real, "datapoint"),
            shown.join(", "),
            match (state == "ALARM", real == 1) {
                (true, true) => "was",
                (true, false) => "were",
                (false, true) => "was not",
                (false, false) => "were not",
            },
            word,
            a.threshold,
            if filled > 0 {
                format!(
                    " and {filled} missing {} {} treated as [{treated}]",
                    plural(filled, "datapoint"),
                    if filled == 1 { "was" } else { "were" }
                )
            } else {
                String::new()
            },
            a.datapoints_to_alarm,
            plural(a.datapoints_to_alarm, "datapoint"),
            if state == "ALARM" {
                "OK -> ALARM"
            } else {
                "ALARM -> OK"
            },
        )
    }
}

/// A datapoint's time as CloudWatch's reasons show it.
fn stamp(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.format("%d/%m/%y %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The values of the query an alarm on metric math watches, by period start, between
/// `range` (ms): the queries evaluated as GetMetricData evaluates them. Queries that no
/// longer evaluate (they were checked when put) give no data.
fn math_points(
    queries: &[MetricDataQuery],
    metrics: &Metrics,
    range: (Millis, Millis),
    now: Millis,
) -> BTreeMap<Millis, f64> {
    let Some(watched) = returned(queries) else {
        return BTreeMap::new();
    };
    let any_period = |p: i64, _: &str| -> CwResult<Millis> { Ok(p * 1000) };
    let (start, end) = range;
    let values = match query::evaluate(
        metrics,
        queries,
        "Metrics",
        &any_period,
        (start as f64 / 1000.0, end as f64 / 1000.0),
        now,
    ) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "an alarm's metric math does not evaluate");
            return BTreeMap::new();
        }
    };
    match values.get(&watched.id) {
        Some(super::math::Value::Series(s)) => {
            s.points.range(start..end).map(|(t, v)| (*t, *v)).collect()
        }
        _ => BTreeMap::new(),
    }
}

/// PutMetricAlarm's request (the members this host evaluates or keeps).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PutMetricAlarmInput {
    pub alarm_name: String,
    pub alarm_description: Option<String>,
    pub actions_enabled: Option<bool>,
    #[serde(default, rename = "OKActions")]
    pub ok_actions: Vec<String>,
    #[serde(default)]
    pub alarm_actions: Vec<String>,
    #[serde(default)]
    pub insufficient_data_actions: Vec<String>,
    pub metric_name: Option<String>,
    pub namespace: Option<String>,
    pub statistic: Option<String>,
    pub extended_statistic: Option<String>,
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    pub period: Option<i64>,
    pub unit: Option<String>,
    pub evaluation_periods: Option<i64>,
    pub datapoints_to_alarm: Option<i64>,
    pub threshold: Option<f64>,
    pub comparison_operator: Option<String>,
    pub treat_missing_data: Option<String>,
    pub evaluate_low_sample_count_percentile: Option<String>,
    pub metrics: Option<Vec<MetricDataQuery>>,
    pub tags: Option<Vec<Tag>>,
    pub threshold_metric_id: Option<String>,
}

/// PutMetricAlarm's metric: (namespace, metric name, period in seconds) of an alarm on
/// one metric, or (None, None, the period of its math) of one on `Metrics`.
fn checked_metric(
    req: &PutMetricAlarmInput,
    now: Millis,
    box_period: bool,
) -> CwResult<(Option<String>, Option<String>, i64)> {
    let missing = |n: &str| CwError::MissingParameter(format!("The parameter {n} is required."));
    // An alarm's period: 10, 20, 30 or a multiple of 60 (PutMetricAlarm's `Period`,
    // and each period of its `Metrics`); a managed alarm's may be the box's.
    let box_secs = i64::try_from(crate::config::get().metrics_period.as_secs()).ok();
    let alarm_period = move |p: i64, what: &str| -> CwResult<Millis> {
        let of_box = box_period && Some(p) == box_secs;
        if of_box || matches!(p, 10 | 20 | 30) || (p >= 60 && p % 60 == 0) {
            Ok(p * 1000)
        } else {
            Err(CwError::InvalidParameterValue(format!(
                "The parameter {what} must be 10, 20, 30 or a multiple of 60 (got {p})"
            )))
        }
    };
    Ok(match &req.metrics {
        Some(queries) => {
            // PutMetricAlarm: "If you use the Metrics parameter, you cannot include the
            // Namespace, MetricName, Dimensions, Period, Unit, Statistic, or
            // ExtendedStatistic parameters" (API reference; the model's docs).
            let given: Vec<&str> = [
                ("MetricName", req.metric_name.is_some()),
                ("Namespace", req.namespace.is_some()),
                ("Dimensions", !req.dimensions.is_empty()),
                ("Period", req.period.is_some()),
                ("Unit", req.unit.is_some()),
                ("Statistic", req.statistic.is_some()),
                ("ExtendedStatistic", req.extended_statistic.is_some()),
            ]
            .into_iter()
            .filter_map(|(n, g)| g.then_some(n))
            .collect();
            if !given.is_empty() {
                return Err(CwError::InvalidParameterCombination(format!(
                    "Metrics cannot be given with {}: an alarm on metric math takes its \
                         metrics, periods, statistics and units from the Metrics array",
                    given.join(", ")
                )));
            }
            let period = math_period(queries, &alarm_period, now)?;
            (None, None, period)
        }
        None => {
            let namespace = req.namespace.clone().ok_or_else(|| missing("Namespace"))?;
            let metric_name = req
                .metric_name
                .clone()
                .ok_or_else(|| missing("MetricName"))?;
            let period = req.period.ok_or_else(|| missing("Period"))?;
            alarm_period(period, "Period")?;
            (Some(namespace), Some(metric_name), period)
        }
    })
}

/// PutMetricAlarm's evaluation: (EvaluationPeriods, DatapointsToAlarm, Threshold,
/// ComparisonOperator), within CloudWatch's bounds.
fn checked_evaluation(req: &PutMetricAlarmInput, period: i64) -> CwResult<(i64, i64, f64, String)> {
    let invalid = |m: String| CwError::InvalidParameterValue(m);
    let missing = |n: &str| CwError::MissingParameter(format!("The parameter {n} is required."));
    let evaluation_periods = req
        .evaluation_periods
        .ok_or_else(|| missing("EvaluationPeriods"))?;
    if evaluation_periods < 1 || evaluation_periods * period > 7 * 86_400 {
        return Err(invalid(format!(
            "EvaluationPeriods {evaluation_periods} × Period {period}: at least one period, \
                 at most 7 days"
        )));
    }
    let datapoints_to_alarm = req.datapoints_to_alarm.unwrap_or(evaluation_periods);
    if datapoints_to_alarm < 1 || datapoints_to_alarm > evaluation_periods {
        return Err(invalid(format!(
            "DatapointsToAlarm {datapoints_to_alarm} must be between 1 and EvaluationPeriods \
                 ({evaluation_periods})"
        )));
    }
    let threshold = req.threshold.ok_or_else(|| missing("Threshold"))?;
    let comparison_operator = req
        .comparison_operator
        .clone()
        .ok_or_else(|| missing("ComparisonOperator"))?;
    if !matches!(
        comparison_operator.as_str(),
        "GreaterThanOrEqualToThreshold"
            | "GreaterThanThreshold"
            | "LessThanThreshold"
            | "LessThanOrEqualToThreshold"
    ) {
        return Err(invalid(format!(
            "ComparisonOperator {comparison_operator}: the anomaly-detection operators \
                 need a band (ThresholdMetricId), which is not evaluated here"
        )));
    }
    Ok((
        evaluation_periods,
        datapoints_to_alarm,
        threshold,
        comparison_operator,
    ))
}

/// PutMetricAlarm's statistic: exactly one of Statistic and ExtendedStatistic (a
/// percentile) of an alarm on one metric; EvaluateLowSampleCountPercentile's values.
fn checked_statistic(req: &PutMetricAlarmInput) -> CwResult<()> {
    let invalid = |m: String| CwError::InvalidParameterValue(m);
    match (&req.statistic, &req.extended_statistic) {
        _ if req.metrics.is_some() => {}
        (Some(_), Some(_)) | (None, None) => {
            return Err(CwError::InvalidParameterCombination(
                "Exactly one of Statistic and ExtendedStatistic must be given.".into(),
            ));
        }
        (Some(s), None)
            if !matches!(
                s.as_str(),
                "SampleCount" | "Average" | "Sum" | "Minimum" | "Maximum"
            ) =>
        {
            return Err(invalid(format!(
                "The value {s} for parameter Statistic is invalid."
            )));
        }
        (None, Some(e)) if !super::metrics::is_percentile(e) => {
            return Err(invalid(format!(
                "The value {e} for parameter ExtendedStatistic is invalid: a percentile \
                     pNN is evaluated here"
            )));
        }
        _ => {}
    }
    // Ref: PutMetricAlarm `EvaluateLowSampleCountPercentile`, "Valid Values: evaluate |
    // ignore"; "Used only for alarms based on percentiles" (kept and shown for others).
    if let Some(v) = &req.evaluate_low_sample_count_percentile
        && !matches!(v.as_str(), "evaluate" | "ignore")
    {
        return Err(invalid(format!(
            "The value {v} for parameter EvaluateLowSampleCountPercentile is invalid: \
                 evaluate or ignore"
        )));
    }
    Ok(())
}

/// PutMetricAlarm's TreatMissingData (`missing` by default).
fn checked_missing_data(req: &PutMetricAlarmInput) -> CwResult<String> {
    let invalid = |m: String| CwError::InvalidParameterValue(m);
    let treat_missing_data = req
        .treat_missing_data
        .clone()
        .unwrap_or_else(|| "missing".into());
    if !matches!(
        treat_missing_data.as_str(),
        "breaching" | "notBreaching" | "ignore" | "missing"
    ) {
        return Err(invalid(format!(
            "The value {treat_missing_data} for parameter TreatMissingData is invalid: \
                 breaching, notBreaching, ignore or missing"
        )));
    }
    Ok(treat_missing_data)
}

/// Says in serve's log each action of the alarm that is kept and shown, not run.
fn say_actions_not_run(req: &PutMetricAlarmInput) {
    // Ref: CloudWatch User Guide, "Alarm actions". Only Application Auto Scaling
    // policies are run here (crate::autoscaling::scaling); the others are kept, shown
    // and said not carried out (docs/cloudwatch.md).
    for action in req
        .ok_actions
        .iter()
        .chain(&req.alarm_actions)
        .chain(&req.insufficient_data_actions)
        .filter(|a| !a.contains(":scalingPolicy:"))
    {
        tracing::warn!(alarm = %req.alarm_name, action = %action,
                "PutMetricAlarm: alarm action kept and shown, not carried out here (only \
                 Application Auto Scaling policies are run: docs/cloudwatch.md)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(name: &str, period: i64, periods: i64) -> PutMetricAlarmInput {
        serde_json::from_value(json!({
            "AlarmName": name, "Namespace": "Shop", "MetricName": "Errors",
            "Statistic": "Sum", "Period": period, "EvaluationPeriods": periods,
            "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"}))
        .unwrap()
    }

    #[test]
    fn an_alarm_that_went_into_alarm_since_is_seen_after_it_left() {
        let a = Alarms::open(None, "us-east-1", "000000000000").unwrap();
        a.put(alarm("e", 10, 2), 1_000).unwrap();
        a.put(alarm("f", 60, 3), 1_000).unwrap();
        let names = ["e".to_string(), "f".to_string(), "nope".to_string()];
        assert_eq!(a.longest_window(&names), 180_000);
        // Into ALARM before the deployment started: not counted.
        a.set_state("f", "ALARM", "r".into(), None, 2_000).unwrap();
        let (fired, missing) = a.went_into_alarm(&names, 3_000);
        assert!(fired.is_empty(), "{fired:?}");
        assert_eq!(missing, ["nope"]);
        // ALARM then back: seen; ALARM → ALARM again: not a new one.
        a.set_state("e", "ALARM", "r".into(), None, 4_000).unwrap();
        a.set_state("e", "OK", "r".into(), None, 5_000).unwrap();
        a.set_state("f", "ALARM", "r".into(), None, 5_000).unwrap();
        assert_eq!(a.went_into_alarm(&names, 3_000).0, ["e"]);
        assert!(a.went_into_alarm(&names, 6_000).0.is_empty());
    }

    /// The evaluation's rules take effect on real metrics at a given clock: the guide's
    /// row `- - X - -` (one breaching minute, then nothing) under each TreatMissingData,
    /// and an M of N alarm that alarms on 2 breaching minutes out of 3 where 3 of 3 does not.
    #[test]
    fn missing_data_and_m_of_n_decide_the_state_an_evaluation_sets() {
        let a = Alarms::open(None, "us-east-1", "000000000000").unwrap();
        let m = Metrics::new();
        let t0: Millis = 1_800_000_000_000;
        let put = |name: &str, extra: Value| {
            let mut req = json!({"AlarmName": name, "Namespace": "Shop", "MetricName": "Errors",
                "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 3,
                "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"});
            for (k, v) in extra.as_object().unwrap() {
                req[k] = v.clone();
            }
            a.put(serde_json::from_value(req).unwrap(), t0).unwrap();
        };
        for t in ["missing", "ignore", "breaching", "notBreaching"] {
            put(t, json!({"TreatMissingData": t}));
        }
        // Minute 2 of 5 breaches; minutes 0, 1, 3, 4 have no data.
        put_value(&m, "Errors", t0 + 2 * 60_000 + 1_000, 5.0);
        a.evaluate(&m, t0 + 5 * 60_000 + 500).unwrap();
        let state = |n: &str| {
            let all = a.all();
            let x = all.iter().find(|x| x.alarm_name == n).unwrap();
            (x.state_value.clone(), x.state_reason.clone())
        };
        assert_eq!(state("missing").0, "ALARM");
        assert_eq!(state("ignore").0, "INSUFFICIENT_DATA");
        let (s, reason) = state("breaching");
        assert_eq!(s, "ALARM");
        assert!(
            reason.contains("and 2 missing datapoints were treated as [Breaching]"),
            "{reason}"
        );
        assert_eq!(state("notBreaching").0, "OK");
        // Later, minutes 6 and 8 breach, 7 does not: 2 of the last 3.
        let b = Alarms::open(None, "us-east-1", "000000000000").unwrap();
        for (name, m_of_n) in [("two", 2), ("three", 3)] {
            let req = json!({"AlarmName": name, "Namespace": "Shop", "MetricName": "Errors",
                "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 3,
                "DatapointsToAlarm": m_of_n, "Threshold": 1.0,
                "ComparisonOperator": "GreaterThanThreshold"});
            b.put(serde_json::from_value(req).unwrap(), t0).unwrap();
        }
        for (k, v) in [(6, 5.0), (7, 0.0), (8, 5.0)] {
            put_value(&m, "Errors", t0 + k * 60_000 + 1_000, v);
        }
        let mut changed = b.evaluate(&m, t0 + 9 * 60_000 + 500).unwrap();
        changed.sort();
        assert_eq!(
            changed,
            [
                ("three".to_string(), "OK".to_string()),
                ("two".to_string(), "ALARM".to_string())
            ]
        );
    }

    fn math_alarm(extra: Value) -> CwResult<PutMetricAlarmInput> {
        let mut req = json!({
            "AlarmName": "sum", "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
            "Threshold": 100.0, "ComparisonOperator": "GreaterThanThreshold",
            "Metrics": [
                {"Id": "m1", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "Shop",
                    "MetricName": "A"}, "Period": 60, "Stat": "Maximum"}},
                {"Id": "m2", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "Shop",
                    "MetricName": "B"}, "Period": 60, "Stat": "Maximum"}},
                {"Id": "e1", "Expression": "m1 + m2", "Label": "both", "ReturnData": true}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        serde_json::from_value(req).map_err(|e| CwError::Serialization(e.to_string()))
    }

    fn put_value(m: &Metrics, name: &str, at: Millis, v: f64) {
        let id = MetricId {
            namespace: "Shop".into(),
            name: name.into(),
            dimensions: BTreeMap::new(),
        };
        let d = super::super::metrics::Datum {
            at,
            unit: "None".into(),
            stats: super::super::metrics::Stats::one(v),
            raw: Some(vec![(v, 1.0)]),
            high_resolution: false,
        };
        m.put(&id, &[d], at);
    }

    #[test]
    fn an_alarm_on_metric_math_watches_its_expression_per_period() {
        let a = Alarms::open(None, "us-east-1", "000000000000").unwrap();
        let m = Metrics::new();
        // A whole minute.
        let t0: Millis = 1_800_000_000_000;
        a.put(math_alarm(json!({})).unwrap(), t0).unwrap();
        let shown = serde_json::to_value(&a.all()[0]).unwrap();
        assert_eq!(
            shown["Metrics"][2],
            json!({"Id": "e1", "Expression": "m1 + m2",
            "Label": "both", "ReturnData": true})
        );
        assert_eq!(shown["Metrics"][0]["MetricStat"]["Period"], 60);
        for absent in ["MetricName", "Namespace", "Period", "Statistic"] {
            assert!(shown.get(absent).is_none(), "{absent} in {shown}");
        }
        // Each alone below 100, their sum above, in two minutes: ALARM (2 of 2).
        for k in 0..2 {
            put_value(&m, "A", t0 + k * 60_000 + 1_000, 60.0);
            put_value(&m, "B", t0 + k * 60_000 + 2_000, 50.0);
        }
        let changed = a.evaluate(&m, t0 + 120_500).unwrap();
        assert_eq!(changed, [("sum".to_string(), "ALARM".to_string())]);
        let now = &a.all()[0];
        assert!(
            now.state_reason
                .starts_with("Threshold Crossed: 2 out of the last 2 datapoints [110.0 ("),
            "{}",
            now.state_reason
        );
        let data: Value = serde_json::from_str(now.state_reason_data.as_deref().unwrap()).unwrap();
        assert_eq!(data["recentDatapoints"], json!([110.0, 110.0]));
        assert_eq!(data["period"], 60);
        assert!(data.get("statistic").is_none(), "{data}");
        // The next minute only B: the sum is B's, below: OK.
        put_value(&m, "B", t0 + 120_000 + 1_000, 50.0);
        put_value(&m, "B", t0 + 180_000 + 1_000, 50.0);
        let changed = a.evaluate(&m, t0 + 240_500).unwrap();
        assert_eq!(changed, [("sum".to_string(), "OK".to_string())]);
        // No data at all: INSUFFICIENT_DATA (TreatMissingData missing).
        let changed = a.evaluate(&m, t0 + 600_500).unwrap();
        assert_eq!(
            changed,
            [("sum".to_string(), "INSUFFICIENT_DATA".to_string())]
        );
    }

    #[test]
    fn an_alarm_on_metric_math_is_refused_as_cloudwatch_refuses_it() {
        let a = Alarms::open(None, "us-east-1", "000000000000").unwrap();
        let refused = |extra: Value| {
            let e = math_alarm(extra).and_then(|r| a.put(r, 1_800_000_000_000));
            e.err().map(|e| (e.query_code(), e.message())).unwrap()
        };
        let (code, m) = refused(json!({"MetricName": "A", "Period": 60}));
        assert_eq!(code, "InvalidParameterCombination");
        assert!(m.contains("MetricName, Period"), "{m}");
        let mut two = math_alarm(json!({})).unwrap().metrics.unwrap();
        two[0].return_data = Some(true);
        let (code, m) = refused(json!({"Metrics": two}));
        assert_eq!(
            (code, m.as_str()),
            (
                "ValidationError",
                "Exactly one element of the metrics list should return data."
            )
        );
        let mut none = math_alarm(json!({})).unwrap().metrics.unwrap();
        none[2].return_data = Some(false);
        assert_eq!(refused(json!({"Metrics": none})).0, "ValidationError");
        let mut no_period = math_alarm(json!({})).unwrap().metrics.unwrap();
        no_period[1].metric_stat.as_mut().unwrap().period = None;
        let (code, m) = refused(json!({"Metrics": no_period}));
        assert_eq!(code, "MissingParameter");
        assert!(m.contains("Metrics.member.2.MetricStat.Period"), "{m}");
        let mut five = math_alarm(json!({})).unwrap().metrics.unwrap();
        five[0].metric_stat.as_mut().unwrap().period = Some(5);
        assert!(refused(json!({"Metrics": five})).1.contains("10, 20, 30"));
        let mut array = math_alarm(json!({})).unwrap().metrics.unwrap();
        array[2].expression = Some("METRICS()".into());
        let (code, m) = refused(json!({"Metrics": array}));
        assert_eq!(code, "ValidationError");
        assert!(m.contains("single time series"), "{m}");
        let mut unknown = math_alarm(json!({})).unwrap().metrics.unwrap();
        unknown[2].expression = Some("m1 + m3".into());
        assert!(refused(json!({"Metrics": unknown})).1.contains("m3"));
        let mut many = math_alarm(json!({})).unwrap().metrics.unwrap();
        for k in 0..10 {
            let mut q = many[0].clone();
            q.id = format!("x{k}");
            many.push(q);
        }
        assert!(
            refused(json!({"Metrics": many}))
                .1
                .contains("at most 10 with a MetricStat")
        );
        assert_eq!(
            refused(json!({"ThresholdMetricId": "e1"})).0,
            "InvalidParameterValue"
        );
    }
}
