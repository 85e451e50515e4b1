//! Scheduled actions' schedules: `at(yyyy-mm-ddThh:mm:ss)`, `rate(value unit)` and
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)` in an IANA time zone (UTC by
//! default), parsed into [`Schedule`] and asked for the first run after a time
//! ([`Schedule::next_after`]): pure, tested without a clock.
//!
//! Ref: Application Auto Scaling API Reference, PutScheduledAction `Schedule` and
//! `Timezone`; EventBridge's cron expression fields (Day-of-week 1–7 is SUN–SAT; one of
//! Day-of-month and Day-of-week must be `?`).

use super::Millis;

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Once, at this local time.
    At(jiff::civil::DateTime),
    /// Every this many minutes from the action's start.
    Rate(i64),
    Cron(Box<Cron>),
}

/// A cron expression's allowed values, field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    /// None: `?` (any day, Day-of-week decides).
    days: Option<Vec<bool>>,
    months: Vec<bool>,
    /// 1 = Sunday … 7 = Saturday; None: `?`.
    weekdays: Option<Vec<bool>>,
    /// None: `*`.
    years: Option<(i16, i16)>,
}

/// Why a schedule or time zone is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("Invalid schedule expression {0:?}: {1}")]
    Expression(String, String),
    #[error("Invalid Timezone {0:?}: not an IANA time zone of this box's tzdata")]
    Timezone(String),
}

fn field(text: &str, lo: u32, hi: u32, names: &[&str], what: &str) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; hi as usize + 1];
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + lo);
        }
        s.parse::<u32>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| format!("{what} value {s:?} is not in {lo}-{hi}"))
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what} step {s:?} is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a > b {
            return Err(format!("{what} range {range:?} runs backwards"));
        }
        for v in (a..=b).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok(allowed)
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let bad = |why: &str| ScheduleError::Expression(text.to_string(), why.to_string());
        let inner = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(at) = inner("at(") {
            let t: jiff::civil::DateTime = at
                .parse()
                .map_err(|_| bad("at() takes yyyy-mm-ddThh:mm:ss"))?;
            return Ok(Schedule::At(t));
        }
        if let Some(rate) = inner("rate(") {
            let mut p = rate.split_whitespace();
            let (Some(n), Some(unit), None) = (p.next(), p.next(), p.next()) else {
                return Err(bad("rate() takes a value and a unit"));
            };
            let n: i64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("the rate's value must be a positive whole number"))?;
            let minutes = match (unit, n) {
                ("minute", 1) | ("minutes", 2..) => 1,
                ("hour", 1) | ("hours", 2..) => 60,
                ("day", 1) | ("days", 2..) => 1440,
                _ => {
                    return Err(bad(
                        "the unit is minute, hour or day for 1 and minutes, hours or days above",
                    ));
                }
            };
            return Ok(Schedule::Rate(n * minutes));
        }
        if let Some(cron) = inner("cron(") {
            let f: Vec<&str> = cron.split_whitespace().collect();
            if f.len() != 6 {
                return Err(bad(
                    "cron() takes 6 fields: Minutes Hours Day-of-month Month Day-of-week Year",
                ));
            }
            // L (last), W (weekday) and # (nth weekday) need calendars of their own.
            let special = |part: &str| {
                part.contains('#')
                    || part == "L"
                    || part == "LW"
                    || ((part.ends_with('L') || part.ends_with('W'))
                        && part.starts_with(|c: char| c.is_ascii_digit()))
            };
            if f.iter().flat_map(|s| s.split(',')).any(special) {
                return Err(bad("L, W and # are not evaluated by minifargate yet"));
            }
            let (days, weekdays) = match (f[2], f[4]) {
                ("?", "?") => {
                    return Err(bad("only one of Day-of-month and Day-of-week may be ?"));
                }
                ("?", w) => (
                    None,
                    Some(field(w, 1, 7, DAYS, "Day-of-week").map_err(|e| bad(&e))?),
                ),
                (d, "?") => (
                    Some(field(d, 1, 31, &[], "Day-of-month").map_err(|e| bad(&e))?),
                    None,
                ),
                _ => return Err(bad("one of Day-of-month and Day-of-week must be ?")),
            };
            let years = match f[5] {
                "*" => None,
                y => {
                    let (a, b) = match y.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (y, y),
                    };
                    let year = |s: &str| {
                        s.parse::<i16>()
                            .ok()
                            .filter(|y| (1970..=2199).contains(y))
                            .ok_or_else(|| bad("Year is * or 1970-2199 (a year or a range)"))
                    };
                    Some((year(a)?, year(b)?))
                }
            };
            return Ok(Schedule::Cron(Box::new(Cron {
                minutes: field(f[0], 0, 59, &[], "Minutes").map_err(|e| bad(&e))?,
                hours: field(f[1], 0, 23, &[], "Hours").map_err(|e| bad(&e))?,
                days,
                months: field(f[3], 1, 12, MONTHS, "Month").map_err(|e| bad(&e))?,
                weekdays,
                years,
            })));
        }
        Err(bad("a schedule is at(...), rate(...) or cron(...)"))
    }

    /// The first run strictly after `since` (ms), in `tz`; `start` is where a rate counts
    /// from. None: no run left (an `at` passed, a cron's years over).
    pub fn next_after(
        &self,
        tz: &jiff::tz::TimeZone,
        since: Millis,
        start: Millis,
    ) -> Option<Millis> {
        match self {
            Schedule::At(t) => {
                let at = t.to_zoned(tz.clone()).ok()?.timestamp().as_millisecond();
                (at > since).then_some(at)
            }
            Schedule::Rate(minutes) => {
                let every = minutes * 60_000;
                let k = if since < start {
                    1
                } else {
                    (since - start) / every + 1
                };
                Some(start + k * every)
            }
            Schedule::Cron(c) => c.next_after(tz, since),
        }
    }
}

impl Cron {
    fn next_after(&self, tz: &jiff::tz::TimeZone, since: Millis) -> Option<Millis> {
        // The next whole minute, then minute by minute (a day that does not match is
        // skipped whole), for at most 5 years.
        let mut t = (since.div_euclid(60_000) + 1) * 60_000;
        let end = since + 5 * 366 * 86_400_000;
        while t <= end {
            let z = jiff::Timestamp::from_millisecond(t)
                .ok()?
                .to_zoned(tz.clone());
            if let Some((lo, hi)) = self.years
                && (z.year() < lo || z.year() > hi)
            {
                if z.year() > hi {
                    return None;
                }
                t += 86_400_000;
                continue;
            }
            let day_ok = self.months[z.month() as usize]
                && self.days.as_ref().is_none_or(|d| d[z.day() as usize])
                && self
                    .weekdays
                    .as_ref()
                    .is_none_or(|w| w[z.weekday().to_sunday_one_offset() as usize]);
            if !day_ok {
                let into_day = i64::from(z.hour()) * 60 + i64::from(z.minute());
                t += (1440 - into_day).max(1) * 60_000;
                continue;
            }
            if self.hours[z.hour() as usize] && self.minutes[z.minute() as usize] {
                return Some(t);
            }
            t += 60_000;
        }
        None
    }
}

/// The time zone named `name` (IANA, from the box's tzdata); UTC when None.
pub fn time_zone(name: Option<&str>) -> Result<jiff::tz::TimeZone, ScheduleError> {
    match name {
        None | Some("UTC") | Some("Etc/UTC") => Ok(jiff::tz::TimeZone::UTC),
        Some(n) => jiff::tz::TimeZone::get(n).map_err(|_| ScheduleError::Timezone(n.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn at_runs_once_at_its_local_time() {
        let s = Schedule::parse("at(2026-11-27T18:30:00)").unwrap();
        let paris = time_zone(Some("Europe/Paris")).unwrap();
        // 18:30 in Paris (UTC+1 in November) is 17:30 UTC.
        let since = ms("2026-11-27T12:00:00Z");
        assert_eq!(
            s.next_after(&paris, since, since),
            Some(ms("2026-11-27T17:30:00Z"))
        );
        assert_eq!(
            s.next_after(&paris, ms("2026-11-27T17:30:00Z"), since),
            None
        );
    }

    #[test]
    fn rates_count_from_the_start() {
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        let start = ms("2026-11-27T12:00:00Z");
        let utc = time_zone(None).unwrap();
        assert_eq!(
            s.next_after(&utc, start, start),
            Some(ms("2026-11-27T12:05:00Z"))
        );
        assert_eq!(
            s.next_after(&utc, ms("2026-11-27T12:07:00Z"), start),
            Some(ms("2026-11-27T12:10:00Z"))
        );
        assert!(Schedule::parse("rate(1 minutes)").is_err());
        assert!(Schedule::parse("rate(0 days)").is_err());
    }

    #[test]
    fn cron_follows_its_fields_in_its_zone() {
        // Weekdays at 09:00 in New York (UTC-5 in November): Friday 27 November 2026 is a
        // Friday; after its run, the next is Monday the 30th.
        let s = Schedule::parse("cron(0 9 ? * MON-FRI *)").unwrap();
        let ny = time_zone(Some("America/New_York")).unwrap();
        let since = ms("2026-11-27T12:00:00Z");
        assert_eq!(
            s.next_after(&ny, since, since),
            Some(ms("2026-11-27T14:00:00Z"))
        );
        assert_eq!(
            s.next_after(&ny, ms("2026-11-27T14:00:00Z"), since),
            Some(ms("2026-11-30T14:00:00Z"))
        );
        let s = Schedule::parse("cron(*/15 * 1 * ? 2026)").unwrap();
        let utc = time_zone(None).unwrap();
        assert_eq!(
            s.next_after(&utc, ms("2026-11-27T12:00:00Z"), 0),
            Some(ms("2026-12-01T00:00:00Z"))
        );
        assert_eq!(s.next_after(&utc, ms("2026-12-31T00:00:00Z"), 0), None);
        for bad in [
            "cron(0 9 * * MON *)",
            "cron(0 9 ? * MON)",
            "cron(61 9 ? * MON *)",
            "cron(0 9 L * ? *)",
            "every day",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }
}
