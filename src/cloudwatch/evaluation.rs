//! The rule that turns an alarm's datapoints into its state: a pure function of the
//! evaluation range (breaching, not breaching or missing, period by period), the alarm's
//! `EvaluationPeriods` (N), `DatapointsToAlarm` (M) and `TreatMissingData`.
//!
//! Ref: CloudWatch User Guide, "Configuring how CloudWatch alarms treat missing data" /
//! "How alarm state is evaluated when data is missing" and "Avoiding premature transitions
//! to alarm state": CloudWatch retrieves more datapoints than N (the *evaluation range*:
//! 5 for the guide's N = 3; AWS does not publish the rule, [`range_len`] takes N + 2);
//! - no datapoint of the N most recent missing: those N are evaluated;
//! - some missing but at least N real datapoints in the range: the N most recent real
//!   ones are evaluated, and TreatMissingData is not consulted;
//! - fewer than N real: the missing ones are filled in as TreatMissingData says, as few
//!   times as possible (N − real), with every real datapoint of the range evaluated;
//! - none at all: `missing` is INSUFFICIENT_DATA, `ignore` keeps the state, `breaching`
//!   ALARM, `notBreaching` OK.
//!
//! ALARM when at least M of the evaluated datapoints breach, else OK. With `missing` and
//! `ignore`, too few real datapoints that all breach still go to ALARM (`ignore`: keep the
//! state) when the oldest breaching one of the N most recent periods is at least M periods
//! old and every later one is breaching or missing (the "premature alarm" rule); the
//! guide's two tables (3 of 3 and 2 of 3, rows `- - X - -`, `- - - X -`, `0 - X - -`) are
//! [`tests`] here, row by row.

/// How many periods an alarm of `n` evaluation periods retrieves (its evaluation range).
pub fn range_len(n: i64) -> i64 {
    n + 2
}

/// What an evaluation makes of an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Alarm,
    Ok,
    InsufficientData,
    /// Keep the state it is in (`ignore`).
    Keep,
}

/// The judgement and what it rests on (for the state reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub outcome: Outcome,
    /// Indices into the range of the real datapoints evaluated, oldest first.
    pub evaluated: Vec<usize>,
    /// Missing periods filled in by TreatMissingData (`breaching`/`notBreaching`).
    pub filled: usize,
    /// Evaluated datapoints (filled ones included) that breach.
    pub breaching: usize,
}

/// Judges an alarm over its evaluation `range` (oldest first; `Some(true)` a breaching
/// datapoint, `Some(false)` one within the threshold, `None` a missing period).
pub fn judge(range: &[Option<bool>], n: usize, m: usize, treat: &str) -> Judged {
    let n = n.max(1);
    let recent_from = range.len().saturating_sub(n);
    let real: Vec<usize> = (0..range.len()).filter(|&i| range[i].is_some()).collect();
    let count = |idx: &[usize]| idx.iter().filter(|&&i| range[i] == Some(true)).count();
    let by_count = |breaching: usize| {
        if breaching >= m {
            Outcome::Alarm
        } else {
            Outcome::Ok
        }
    };
    if real.len() >= n {
        // The N most recent real datapoints: the N last periods when none is missing.
        let evaluated = real[real.len() - n..].to_vec();
        let breaching = count(&evaluated);
        return Judged {
            outcome: by_count(breaching),
            evaluated,
            filled: 0,
            breaching,
        };
    }
    let filled = n - real.len();
    let real_breaching = count(&real);
    let (outcome, breaching) = match treat {
        "breaching" => (by_count(real_breaching + filled), real_breaching + filled),
        "notBreaching" => (by_count(real_breaching), real_breaching),
        _ if real.is_empty() => (
            if treat == "ignore" {
                Outcome::Keep
            } else {
                Outcome::InsufficientData
            },
            0,
        ),
        _ if real_breaching >= m => (Outcome::Alarm, real_breaching),
        _ if real_breaching == real.len() && premature(&range[recent_from..], m) => (
            if treat == "ignore" {
                Outcome::Keep
            } else {
                Outcome::Alarm
            },
            real_breaching,
        ),
        _ => (Outcome::Ok, real_breaching),
    };
    let filled = if matches!(treat, "breaching" | "notBreaching") {
        filled
    } else {
        0
    };
    Judged {
        outcome,
        evaluated: real,
        filled,
        breaching,
    }
}

/// The guide's premature-alarm rule over the N most recent periods: the oldest breaching
/// datapoint is at least `m` periods old (the newest period is 1 old) and every later
/// period is breaching or missing.
fn premature(recent: &[Option<bool>], m: usize) -> bool {
    let Some(oldest) = recent.iter().position(|p| *p == Some(true)) else {
        return false;
    };
    recent.len() - oldest >= m && recent[oldest..].iter().all(|p| *p != Some(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of the guide's tables: `0` within the threshold, `X` breaching, `-` missing,
    /// the most recent on the right.
    fn row(s: &str) -> Vec<Option<bool>> {
        s.split_whitespace()
            .map(|c| match c {
                "0" => Some(false),
                "X" => Some(true),
                _ => None,
            })
            .collect()
    }

    fn states(s: &str, n: usize, m: usize) -> [Outcome; 4] {
        ["missing", "ignore", "breaching", "notBreaching"].map(|t| judge(&row(s), n, m, t).outcome)
    }

    use Outcome::{Alarm, InsufficientData, Keep, Ok};

    /// The guide's two tables, range 5: DatapointsToAlarm = EvaluationPeriods = 3, then
    /// 2 of 3 (M of N); columns MISSING, IGNORE, BREACHING, NOT BREACHING.
    #[test]
    fn the_guide_s_tables_row_by_row() {
        assert_eq!(range_len(3), 5);
        let table = [
            (3, "0 - X - X", [Ok, Ok, Ok, Ok]),
            (3, "0 - - - -", [Ok, Ok, Ok, Ok]),
            (3, "- - - - -", [InsufficientData, Keep, Alarm, Ok]),
            (3, "0 X X - X", [Alarm, Alarm, Alarm, Alarm]),
            (3, "- - X - -", [Alarm, Keep, Alarm, Ok]),
            (2, "0 - X - X", [Alarm, Alarm, Alarm, Alarm]),
            (2, "0 0 X 0 X", [Alarm, Alarm, Alarm, Alarm]),
            (2, "0 - X - -", [Ok, Ok, Alarm, Ok]),
            (2, "- - - - 0", [Ok, Ok, Alarm, Ok]),
            (2, "- - - X -", [Alarm, Keep, Alarm, Ok]),
        ];
        for (m, r, want) in table {
            assert_eq!(states(r, 3, m), want, "{m} of 3: {r}");
        }
    }

    /// M below N: fewer breaching datapoints than N are enough, and not fewer than M; the
    /// breaching ones need not be consecutive.
    #[test]
    fn m_of_n_alarms_on_m_breaching_datapoints_anywhere_in_the_last_n() {
        for (r, want) in [
            ("0 0 X 0 X", Alarm),
            ("0 0 0 X X", Alarm),
            ("X X 0 0 X", Ok),
            ("0 0 0 0 X", Ok),
        ] {
            assert_eq!(judge(&row(r), 3, 2, "missing").outcome, want, "{r}");
            // The same rows as N of N: never with fewer than 3.
            let three = if r == "0 0 0 X X" || r == "0 0 X 0 X" {
                Ok
            } else {
                want
            };
            assert_eq!(judge(&row(r), 3, 3, "missing").outcome, three, "{r}");
        }
    }

    /// The guide's text: `- - - - X` and `- - - X -` do not alarm at once with 3 of 3;
    /// the real datapoints reach back past missing periods before anything is filled in.
    #[test]
    fn recent_gaps_reach_back_and_fill_as_little_as_possible() {
        assert_eq!(judge(&row("- - - - X"), 3, 3, "missing").outcome, Ok);
        assert_eq!(judge(&row("- - - X -"), 3, 3, "missing").outcome, Ok);
        // Three real datapoints, the last period missing: evaluated without a fill.
        let j = judge(&row("- X X X -"), 3, 3, "notBreaching");
        assert_eq!(
            (j.outcome, j.filled, j.evaluated),
            (Alarm, 0, vec![1, 2, 3])
        );
        // Two real: one fill only, breaching, which makes 2 of 3.
        let j = judge(&row("0 - X - -"), 3, 3, "breaching");
        assert_eq!((j.outcome, j.filled, j.breaching), (Ok, 1, 2));
    }
}
