//! The box's metric store: one series per metric (namespace, name, the set of its
//! dimensions), each a map of time buckets to a statistic set (and, while they are
//! recent, the raw values percentiles need).
//!
//! CloudWatch's storage rules (API reference, GetMetricStatistics: "Amazon CloudWatch
//! retains metric data as follows"): a datum of standard resolution (StorageResolution
//! 60, the default) is kept at one-minute granularity; one of high resolution
//! (StorageResolution 1) at one-second granularity for 3 hours, then rolled up into its
//! minute; minute data is kept 15 days here (CloudWatch keeps it 15 days, then 5-minute
//! data 63 days and hourly data 15 months: older data is dropped here, said in
//! docs/cloudwatch.md). Everything is in serve's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Milliseconds since the epoch.
pub type Millis = i64;

/// How long one-second buckets keep their resolution (CloudWatch: 3 hours).
pub const HIGH_RESOLUTION_KEPT: Millis = 3 * 3600 * 1000;
/// How long minute data is kept here.
pub const MINUTE_DATA_KEPT: Millis = 15 * 24 * 3600 * 1000;
/// How long raw values are kept for percentiles (as the one-second buckets).
const RAW_VALUES_KEPT: Millis = HIGH_RESOLUTION_KEPT;
/// At most this many raw values per bucket are kept for percentiles; a bucket that
/// received more answers no percentile (said in docs/cloudwatch.md).
const RAW_VALUES_PER_BUCKET: usize = 10_000;

/// A metric's identity: CloudWatch treats each distinct combination of dimensions as a
/// separate metric (sorted here by name: their order in a request does not matter).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct MetricId {
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
}

/// A statistic set: what CloudWatch keeps of the values of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn one(v: f64) -> Stats {
        Stats {
            count: 1.0,
            sum: v,
            min: v,
            max: v,
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn average(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            0.0
        }
    }
}

/// One bucket of a series: its statistics and, while recent, its raw values (value,
/// count), or `None` once percentiles cannot be computed from it (a statistic set with
/// several different samples, a value dropped, or rolled up).
#[derive(Debug, Clone)]
struct Bucket {
    stats: Stats,
    raw: Option<Vec<(f64, f64)>>,
}

/// One datum as PutMetricData gives it, after validation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Datum {
    pub at: Millis,
    pub unit: String,
    pub stats: Stats,
    /// The raw (value, count) pairs, when the datum has them (`Value`, `Values`/`Counts`,
    /// a statistic set whose samples are all one value).
    pub raw: Option<Vec<(f64, f64)>>,
    pub high_resolution: bool,
}

#[derive(Debug, Default)]
struct Series {
    /// (bucket start, unit) -> bucket. One-second buckets for high-resolution data newer
    /// than [`HIGH_RESOLUTION_KEPT`], minute buckets otherwise.
    buckets: BTreeMap<(Millis, String), Bucket>,
    last_put: Millis,
}

/// The statistics of one period of a query.
#[derive(Debug, Clone)]
pub struct PeriodStats {
    pub start: Millis,
    pub stats: Stats,
    /// Every unit the period's data had (CloudWatch answers the unit of the data).
    pub unit: String,
    /// The raw values, or `None` when a bucket of the period had none.
    raw: Option<Vec<(f64, f64)>>,
    /// Whether any value is negative (no percentile then, as CloudWatch says).
    negative: bool,
}

impl PeriodStats {
    /// Percentile `p` (0–100) of the period's values, or `None` when CloudWatch would not
    /// have it (no raw values, or a negative value).
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.negative {
            return None;
        }
        let raw = self.raw.as_ref()?;
        let mut v: Vec<(f64, f64)> = raw.clone();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = v.iter().map(|x| x.1).sum();
        if total <= 0.0 {
            return None;
        }
        // The smallest value at or above which p % of the samples lie (nearest rank).
        let rank = (p / 100.0 * total).ceil().max(1.0);
        let mut seen = 0.0;
        for (value, count) in &v {
            seen += count;
            if seen >= rank {
                return Some(*value);
            }
        }
        v.last().map(|x| x.0)
    }
}

/// The store. Every operation locks it for the time of one request.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<HashMap<MetricId, Series>>,
    /// When [`Metrics::age`] last walked the series: it does so at most once a minute.
    aged: std::sync::atomic::AtomicI64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MetricId, Series>> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `data` to `metric` (received at `now`).
    pub fn put(&self, metric: &MetricId, data: &[Datum], now: Millis) {
        let mut all = self.lock();
        let series = all.entry(metric.clone()).or_default();
        series.last_put = series.last_put.max(now);
        for d in data {
            let width = if d.high_resolution && now - d.at < HIGH_RESOLUTION_KEPT {
                1000
            } else {
                60_000
            };
            let key = (d.at.div_euclid(width) * width, d.unit.clone());
            match series.buckets.get_mut(&key) {
                Some(b) => {
                    b.stats.merge(&d.stats);
                    b.raw = match (b.raw.take(), &d.raw) {
                        (Some(mut have), Some(more))
                            if have.len() + more.len() <= RAW_VALUES_PER_BUCKET =>
                        {
                            have.extend_from_slice(more);
                            Some(have)
                        }
                        _ => None,
                    };
                }
                None => {
                    series.buckets.insert(
                        key,
                        Bucket {
                            stats: d.stats,
                            raw: d.raw.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Drops what is older than the retention and rolls high-resolution buckets older
    /// than 3 hours into their minute (called by the operations; cheap when nothing aged).
    pub fn age(&self, now: Millis) {
        use std::sync::atomic::Ordering;
        let last = self.aged.load(Ordering::Relaxed);
        if now - last < 60_000
            || self
                .aged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let mut all = self.lock();
        all.retain(|_, s| {
            let old: Vec<(Millis, String)> = s
                .buckets
                .range(..(now - HIGH_RESOLUTION_KEPT, String::new()))
                .map(|(k, _)| k.clone())
                .collect();
            for key in old {
                let (at, unit) = key.clone();
                if at < now - MINUTE_DATA_KEPT {
                    s.buckets.remove(&key);
                    continue;
                }
                let minute = at.div_euclid(60_000) * 60_000;
                let stale_raw = at < now - RAW_VALUES_KEPT;
                if minute == at {
                    if stale_raw && let Some(b) = s.buckets.get_mut(&key) {
                        b.raw = None;
                    }
                    continue;
                }
                if let Some(b) = s.buckets.remove(&key) {
                    match s.buckets.entry((minute, unit)) {
                        std::collections::btree_map::Entry::Occupied(mut m) => {
                            let m = m.get_mut();
                            m.stats.merge(&b.stats);
                            m.raw = None;
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(Bucket {
                                stats: b.stats,
                                raw: None,
                            });
                        }
                    }
                }
            }
            !s.buckets.is_empty()
        });
    }

    /// Everything held, as datums (one a bucket, at the bucket's start; `high_resolution`
    /// as given): what a box's agent hands its serve (`crate::cluster::metrics`).
    pub fn export(&self, high_resolution: bool) -> Vec<(MetricId, Vec<Datum>)> {
        let all = self.lock();
        let mut out: Vec<(MetricId, Vec<Datum>)> = all
            .iter()
            .map(|(id, s)| {
                let data = s
                    .buckets
                    .iter()
                    .map(|((at, unit), b)| Datum {
                        at: *at,
                        unit: unit.clone(),
                        stats: b.stats,
                        raw: b.raw.clone(),
                        high_resolution,
                    })
                    .collect();
                (id.clone(), data)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every metric with data newer than `since`, with when it last received a datum.
    pub fn list(&self, since: Millis) -> Vec<(MetricId, Millis)> {
        let all = self.lock();
        let mut out: Vec<(MetricId, Millis)> = all
            .iter()
            .filter(|(_, s)| {
                s.buckets
                    .keys()
                    .next_back()
                    .is_some_and(|(at, _)| *at >= since)
                    || s.last_put >= since
            })
            .map(|(id, s)| (id.clone(), s.last_put))
            .collect();
        out.sort();
        out
    }

    /// The statistics of `metric` per period of `period` ms from `start` (inclusive) to
    /// `end` (exclusive), only of data of `unit` when given; periods without data are
    /// left out, as CloudWatch does.
    pub fn query(
        &self,
        metric: &MetricId,
        start: Millis,
        end: Millis,
        period: Millis,
        unit: Option<&str>,
    ) -> Vec<PeriodStats> {
        let all = self.lock();
        let Some(s) = all.get(metric) else {
            return Vec::new();
        };
        let mut periods: BTreeMap<Millis, PeriodStats> = BTreeMap::new();
        for ((at, u), b) in s.buckets.range((start, String::new())..) {
            if *at >= end {
                break;
            }
            if unit.is_some_and(|want| want != u) {
                continue;
            }
            let p = start + (at - start).div_euclid(period) * period;
            let negative = b.stats.min < 0.0;
            match periods.get_mut(&p) {
                Some(ps) => {
                    // Mixed units in one period: the first unit is named (CloudWatch
                    // answers them apart only when asked by unit).
                    ps.stats.merge(&b.stats);
                    ps.negative |= negative;
                    ps.raw = match (ps.raw.take(), &b.raw) {
                        (Some(mut have), Some(more)) => {
                            have.extend_from_slice(more);
                            Some(have)
                        }
                        _ => None,
                    };
                }
                None => {
                    periods.insert(
                        p,
                        PeriodStats {
                            start: p,
                            stats: b.stats,
                            unit: u.clone(),
                            raw: b.raw.clone(),
                            negative,
                        },
                    );
                }
            }
        }
        periods.into_values().collect()
    }
}

/// A statistic of a period: SampleCount, Average, Sum, Minimum, Maximum, or a percentile `pNN.NN`.
#[derive(Debug, Clone, PartialEq)]
pub enum Stat {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
    Percentile(f64),
}

impl Stat {
    pub fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "SampleCount" => Stat::SampleCount,
            "Average" => Stat::Average,
            "Sum" => Stat::Sum,
            "Minimum" => Stat::Minimum,
            "Maximum" => Stat::Maximum,
            _ => {
                let p = s.strip_prefix('p')?;
                let digits = p.split_once('.').map_or(p.len() <= 3, |(a, b)| {
                    a.len() <= 3 && !b.is_empty() && b.len() <= 10
                });
                let v: f64 = p.parse().ok().filter(|_| digits)?;
                if !(0.0..=100.0).contains(&v) || p.starts_with('+') {
                    return None;
                }
                Stat::Percentile(v)
            }
        })
    }

    pub fn of(&self, p: &PeriodStats) -> Option<f64> {
        Some(match self {
            Stat::SampleCount => p.stats.count,
            Stat::Average => p.stats.average(),
            Stat::Sum => p.stats.sum,
            Stat::Minimum => p.stats.min,
            Stat::Maximum => p.stats.max,
            Stat::Percentile(q) => return p.percentile(*q),
        })
    }
}

/// Whether `s` is a percentile statistic (`p99`, `p99.9`).
pub fn is_percentile(s: &str) -> bool {
    matches!(Stat::parse(s), Some(Stat::Percentile(_)))
}

/// Statistic `s` (a name or a percentile) of a period, if it has one.
pub fn statistic(s: &str, p: &PeriodStats) -> Option<f64> {
    Stat::parse(s)?.of(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> MetricId {
        MetricId {
            namespace: "App".into(),
            name: "Latency".into(),
            dimensions: BTreeMap::from([("Service".into(), "web".into())]),
        }
    }

    fn datum(at: Millis, v: f64, high: bool) -> Datum {
        Datum {
            at,
            unit: "Milliseconds".into(),
            stats: Stats::one(v),
            raw: Some(vec![(v, 1.0)]),
            high_resolution: high,
        }
    }

    #[test]
    fn periods_aggregate_their_buckets_and_percentiles_use_the_raw_values() {
        let m = Metrics::new();
        let now = 1_800_000_000_000;
        let t0 = now - 10 * 60_000;
        let data: Vec<Datum> = (1..=100)
            .map(|i| datum(t0 + i * 1000, i as f64, false))
            .collect();
        m.put(&id(), &data, now);
        let got = m.query(&id(), t0, now, 300_000, None);
        assert_eq!(got.len(), 1);
        let p = &got[0];
        assert_eq!(p.start, t0);
        assert_eq!(
            (p.stats.count, p.stats.sum, p.stats.min, p.stats.max),
            (100.0, 5050.0, 1.0, 100.0)
        );
        assert_eq!(p.percentile(50.0), Some(50.0));
        assert_eq!(p.percentile(99.0), Some(99.0));
        assert_eq!(p.percentile(100.0), Some(100.0));
        // Another unit is another series of buckets.
        assert!(m.query(&id(), t0, now, 300_000, Some("Count")).is_empty());
        // End is exclusive, start inclusive.
        assert!(m.query(&id(), now, now + 60_000, 60_000, None).is_empty());
    }

    #[test]
    fn high_resolution_keeps_seconds_for_three_hours_then_rolls_up_into_minutes() {
        let m = Metrics::new();
        let now = 1_800_000_000_000;
        let at = now - 60_000 + 5_000;
        m.put(
            &id(),
            &[datum(at, 1.0, true), datum(at + 1000, 3.0, true)],
            now,
        );
        // Two one-second buckets: a 1-second period sees them apart.
        let start = at.div_euclid(1000) * 1000;
        assert_eq!(m.query(&id(), start, now, 1000, None).len(), 2);
        // Standard resolution would have merged them into the minute.
        m.age(now + HIGH_RESOLUTION_KEPT + 120_000);
        let minute = at.div_euclid(60_000) * 60_000;
        let got = m.query(&id(), minute, now, 1000, None);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].stats.count, got[0].stats.sum), (2.0, 4.0));
        assert_eq!(got[0].percentile(50.0), None, "raw values are gone");
        m.age(now + MINUTE_DATA_KEPT + 120_000);
        assert!(m.list(0).is_empty());
    }
}
