//! Metric math for GetMetricData and alarms on metric math: an `Expression` over the other queries' ids, scalars
//! and CloudWatch's functions, evaluated on the time series the MetricStat queries
//! answered. What is not evaluated here (search expressions, anomaly bands, Contributor
//! Insights, service quotas, Metrics Insights queries, LAMBDA) is refused naming the
//! function, as an expression CloudWatch cannot evaluate is (a `ValidationError`).
//!
//! Ref: Amazon CloudWatch User Guide, "Using metric math" / "Metric math syntax and
//! functions": functions in uppercase, ids start with a lowercase letter; arithmetic
//! treats a missing value as 0 and drops a point it would divide by zero; comparisons and
//! logical operators give 0 or 1; the final result is one time series or an array of
//! them, never a scalar.

use super::metrics::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// A time series: a label and its values by timestamp (ms), oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: BTreeMap<Millis, f64>,
    /// The period of a metric's series (PERIOD() answers it), none for a computed one.
    pub period: Option<Millis>,
}

impl Series {
    fn computed(label: &str, points: BTreeMap<Millis, f64>) -> Series {
        Series {
            label: label.to_string(),
            points,
            period: None,
        }
    }
}

/// What an expression (or part of one) evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Series(Series),
    Array(Vec<Series>),
}

/// Why an expression cannot be evaluated: CloudWatch's `ValidationError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MathError(pub String);

type MResult<T> = Result<T, MathError>;

fn err<T>(m: impl Into<String>) -> MResult<T> {
    Err(MathError(m.into()))
}

/// The functions evaluated here.
pub const FUNCTIONS: &[&str] = &[
    "ABS",
    "AVG",
    "CEIL",
    "DATAPOINT_COUNT",
    "DATE",
    "DAY",
    "DIFF",
    "DIFF_TIME",
    "EPOCH",
    "FILL",
    "FIRST",
    "FLOOR",
    "HOUR",
    "IF",
    "LAST",
    "LOG",
    "LOG10",
    "MAX",
    "METRIC_COUNT",
    "METRICS",
    "MIN",
    "MINUTE",
    "MONTH",
    "PERIOD",
    "RATE",
    "REMOVE_EMPTY",
    "RUNNING_SUM",
    "SLICE",
    "SORT",
    "STDDEV",
    "SUM",
    "TIME_SERIES",
    "YEAR",
];

/// CloudWatch's functions that are not evaluated here, and why (said in the refusal).
const NOT_HERE: &[(&str, &str)] = &[
    (
        "ANOMALY_DETECTION_BAND",
        "anomaly detection models are not kept here",
    ),
    (
        "INSIGHT_RULE_METRIC",
        "Contributor Insights rules are not served here",
    ),
    ("SEARCH", "search expressions are not evaluated here"),
    ("SERVICE_QUOTA", "service quotas are not known here"),
    ("LAMBDA", "Lambda functions are not run here"),
    ("SELECT", "Metrics Insights queries are not evaluated here"),
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Id(String),
    Word(String),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn tokens(s: &str) -> MResult<Vec<Tok>> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            if i < c.len() && (c[i] == 'e' || c[i] == 'E') {
                let mut j = i + 1;
                if j < c.len() && (c[j] == '+' || c[j] == '-') {
                    j += 1;
                }
                if j < c.len() && c[j].is_ascii_digit() {
                    i = j;
                    while i < c.len() && c[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = c[start..i].iter().collect();
            let v = text
                .parse()
                .map_err(|_| MathError(format!("the number {text} is not valid")))?;
            out.push(Tok::Num(v));
            continue;
        }
        if ch.is_ascii_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let w: String = c[start..i].iter().collect();
            out.push(match w.as_str() {
                "AND" => Tok::Op("&&"),
                "OR" => Tok::Op("||"),
                _ if w.starts_with(|x: char| x.is_ascii_lowercase()) => Tok::Id(w),
                _ => Tok::Word(w),
            });
            continue;
        }
        if ch == '"' || ch == '\'' || ch == '“' {
            let close = if ch == '“' { '”' } else { ch };
            let start = i + 1;
            i = start;
            while i < c.len() && c[i] != close {
                i += 1;
            }
            if i >= c.len() {
                return err("a string is not closed");
            }
            out.push(Tok::Str(c[start..i].iter().collect()));
            i += 1;
            continue;
        }
        let two: String = c[i..(i + 2).min(c.len())].iter().collect();
        if let Some(op) = ["==", "!=", "<=", ">=", "&&", "||"]
            .into_iter()
            .find(|o| *o == two)
        {
            out.push(Tok::Op(op));
            i += 2;
            continue;
        }
        out.push(match ch {
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '^' => Tok::Op("^"),
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            other => return err(format!("unexpected character '{other}'")),
        });
        i += 1;
    }
    Ok(out)
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Ref(String),
    Str(String),
    /// An uppercase word that is an argument, not a call (`AVG` in SORT, `REPEAT`).
    Word(String),
    Neg(Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    List(Vec<Expr>),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok, what: &str) -> MResult<()> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            _ => err(format!("{what} expected")),
        }
    }

    fn binary(&mut self, level: usize) -> MResult<Expr> {
        const LEVELS: &[&[&str]] = &[
            &["||"],
            &["&&"],
            &["==", "!=", "<=", ">=", "<", ">"],
            &["+", "-"],
            &["*", "/"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(Tok::Op(op)) = self.peek() {
            let op = *op;
            if !LEVELS[level].contains(&op) {
                break;
            }
            self.pos += 1;
            let right = self.binary(level + 1)?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> MResult<Expr> {
        if self.peek() == Some(&Tok::Op("-")) {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.power()
    }

    fn power(&mut self) -> MResult<Expr> {
        let base = self.atom()?;
        if self.peek() == Some(&Tok::Op("^")) {
            self.pos += 1;
            let exp = self.unary()?;
            return Ok(Expr::Bin("^", Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn list(&mut self, close: Tok) -> MResult<Vec<Expr>> {
        let mut items = Vec::new();
        if self.peek() == Some(&close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.binary(0)?);
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(t) if t == close => return Ok(items),
                _ => return err("',' or a closing bracket expected"),
            }
        }
    }

    fn atom(&mut self) -> MResult<Expr> {
        match self.next() {
            Some(Tok::Num(v)) => Ok(Expr::Num(v)),
            Some(Tok::Id(id)) => Ok(Expr::Ref(id)),
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Word(w)) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    let args = self.list(Tok::RParen)?;
                    Ok(Expr::Call(w, args))
                } else {
                    Ok(Expr::Word(w))
                }
            }
            Some(Tok::LParen) => {
                let e = self.binary(0)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::LBracket) => Ok(Expr::List(self.list(Tok::RBracket)?)),
            Some(t) => err(format!("unexpected {t:?}")),
            None => err("the expression ends too early"),
        }
    }
}

/// Parses `text`; a function CloudWatch has that is not evaluated here, or one it does
/// not have, is refused.
pub fn parse(text: &str) -> MResult<Expr> {
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
    };
    if p.toks.is_empty() {
        return err("the expression is empty");
    }
    let e = p.binary(0)?;
    if p.pos < p.toks.len() {
        return err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    check_calls(&e)?;
    Ok(e)
}

fn check_calls(e: &Expr) -> MResult<()> {
    match e {
        Expr::Call(f, args) => {
            if let Some((_, why)) = NOT_HERE.iter().find(|(n, _)| n == f) {
                return err(format!(
                    "Unsupported function {f}: {why} (minifargate evaluates {}; docs/cloudwatch.md)",
                    FUNCTIONS.join(", ")
                ));
            }
            if !FUNCTIONS.contains(&f.as_str()) {
                return err(format!(
                    "Unknown function {f} (functions are written in uppercase: {})",
                    FUNCTIONS.join(", ")
                ));
            }
            args.iter().try_for_each(check_calls)
        }
        Expr::Neg(a) => check_calls(a),
        Expr::Bin(_, a, b) => {
            check_calls(a)?;
            check_calls(b)
        }
        Expr::List(items) => items.iter().try_for_each(check_calls),
        _ => Ok(()),
    }
}

/// The ids an expression refers to.
pub fn references(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Ref(id) => {
            out.insert(id.clone());
        }
        Expr::Neg(a) => references(a, out),
        Expr::Bin(_, a, b) => {
            references(a, out);
            references(b, out);
        }
        Expr::Call(_, args) | Expr::List(args) => args.iter().for_each(|a| references(a, out)),
        _ => {}
    }
}

/// What an expression is evaluated against.
pub struct Context<'a> {
    /// The value of each id evaluated so far.
    pub values: &'a BTreeMap<String, Value>,
    /// The MetricStat queries' series, in request order, by id (METRICS()).
    pub metrics: &'a [(String, Series)],
    /// The timestamps of a non-sparse series (TIME_SERIES, FILL, MINUTE…): every period
    /// from the query's start to its end.
    pub grid: Vec<Millis>,
}

/// Evaluates `e` in `cx`.
pub fn eval(e: &Expr, cx: &Context) -> MResult<Value> {
    match e {
        Expr::Num(v) => Ok(Value::Scalar(*v)),
        Expr::Ref(id) => cx
            .values
            .get(id)
            .cloned()
            .map_or_else(|| err(format!("Unrecognized id {id}: no query has it")), Ok),
        Expr::Str(_) => err("a string is only an argument of METRICS()"),
        Expr::Word(w) => err(format!("{w} is only an argument (of SORT or FILL)")),
        Expr::Neg(a) => unary(eval(a, cx)?, |v| -v),
        Expr::Bin(op, a, b) => binary(op, eval(a, cx)?, eval(b, cx)?),
        Expr::List(items) => {
            let mut all = Vec::new();
            for i in items {
                match eval(i, cx)? {
                    Value::Series(s) => all.push(s),
                    Value::Array(a) => all.extend(a),
                    Value::Scalar(_) => return err("an array holds time series, not scalars"),
                }
            }
            Ok(Value::Array(all))
        }
        Expr::Call(f, args) => call(f, args, cx),
    }
}

fn unary(v: Value, f: impl Fn(f64) -> f64) -> MResult<Value> {
    let map = |s: Series| {
        let points = s
            .points
            .into_iter()
            .map(|(t, v)| (t, f(v)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        Series::computed(&s.label, points)
    };
    Ok(match v {
        Value::Scalar(x) => Value::Scalar(f(x)),
        Value::Series(s) => Value::Series(map(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(map).collect()),
    })
}

fn apply(op: &str, a: f64, b: f64) -> f64 {
    let truth = |x: bool| if x { 1.0 } else { 0.0 };
    match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "^" => a.powf(b),
        "==" => truth(a == b),
        "!=" => truth(a != b),
        "<" => truth(a < b),
        ">" => truth(a > b),
        "<=" => truth(a <= b),
        ">=" => truth(a >= b),
        "&&" => truth(a != 0.0 && b != 0.0),
        "||" => truth(a != 0.0 || b != 0.0),
        _ => f64::NAN,
    }
}

/// Two series point by point over the timestamps of either, a missing value as 0; a
/// point whose result is not a finite number (a division by zero) is dropped.
fn zip(op: &str, a: &Series, b: &Series) -> Series {
    let times: BTreeSet<Millis> = a.points.keys().chain(b.points.keys()).copied().collect();
    let points = times
        .into_iter()
        .map(|t| {
            let x = a.points.get(&t).copied().unwrap_or(0.0);
            let y = b.points.get(&t).copied().unwrap_or(0.0);
            (t, apply(op, x, y))
        })
        .filter(|(_, v)| v.is_finite())
        .collect();
    Series::computed(&a.label, points)
}

fn binary(op: &'static str, a: Value, b: Value) -> MResult<Value> {
    use Value::*;
    let with_scalar = |s: self::Series, x: f64, left: bool| {
        let points = s
            .points
            .iter()
            .map(|(t, v)| {
                (
                    *t,
                    if left {
                        apply(op, x, *v)
                    } else {
                        apply(op, *v, x)
                    },
                )
            })
            .filter(|(_, v)| v.is_finite())
            .collect();
        self::Series::computed(&s.label, points)
    };
    Ok(match (a, b) {
        (Scalar(x), Scalar(y)) => Scalar(apply(op, x, y)),
        (Series(s), Scalar(x)) => Series(with_scalar(s, x, false)),
        (Scalar(x), Series(s)) => Series(with_scalar(s, x, true)),
        (Series(s), Series(t)) => Series(zip(op, &s, &t)),
        (Array(a), Scalar(x)) => Array(a.into_iter().map(|s| with_scalar(s, x, false)).collect()),
        (Scalar(x), Array(a)) => Array(a.into_iter().map(|s| with_scalar(s, x, true)).collect()),
        (Array(a), Series(t)) => Array(a.iter().map(|s| zip(op, s, &t)).collect()),
        (Series(s), Array(a)) => Array(
            a.iter()
                .map(|t| {
                    let mut z = zip(op, &s, t);
                    z.label = t.label.clone();
                    z
                })
                .collect(),
        ),
        (Array(_), Array(_)) => {
            return err(format!(
                "the operator {op} takes at most one array of time series"
            ));
        }
    })
}

fn one_series(v: Value, f: &str) -> MResult<Series> {
    match v {
        Value::Series(s) => Ok(s),
        _ => err(format!("{f} takes a single time series here")),
    }
}

fn array(v: Value, f: &str) -> MResult<Vec<Series>> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Series(s) => Ok(vec![s]),
        Value::Scalar(_) => err(format!("{f} takes an array of time series")),
    }
}

fn scalar(v: Value, f: &str) -> MResult<f64> {
    match v {
        Value::Scalar(x) => Ok(x),
        _ => err(format!("{f} takes a scalar here")),
    }
}

/// A statistic of values (`AVG`, `SUM`, `MIN`, `MAX`, `STDDEV`, `DATAPOINT_COUNT`).
fn statistic(f: &str, v: &[f64]) -> f64 {
    let n = v.len() as f64;
    match f {
        "SUM" => v.iter().sum(),
        "AVG" => v.iter().sum::<f64>() / n,
        "MIN" => v.iter().copied().fold(f64::INFINITY, f64::min),
        "MAX" => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "STDDEV" => {
            let mean = v.iter().sum::<f64>() / n;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
        }
        "DATAPOINT_COUNT" => n,
        _ => f64::NAN,
    }
}

/// A reduction: of one series, a scalar; of an array, a series of the statistic at each
/// timestamp (AVG over every series, a missing value as 0, as the guide says; the others
/// over the values present).
fn reduce(f: &str, v: Value) -> MResult<Value> {
    match v {
        Value::Series(s) => {
            let values: Vec<f64> = s.points.values().copied().collect();
            Ok(Value::Scalar(statistic(f, &values)))
        }
        Value::Array(a) => {
            let times: BTreeSet<Millis> = a.iter().flat_map(|s| s.points.keys().copied()).collect();
            let points = times
                .into_iter()
                .map(|t| {
                    let present: Vec<f64> =
                        a.iter().filter_map(|s| s.points.get(&t).copied()).collect();
                    let v = if f == "AVG" {
                        present.iter().sum::<f64>() / a.len() as f64
                    } else {
                        statistic(f, &present)
                    };
                    (t, v)
                })
                .filter(|(_, v)| v.is_finite())
                .collect();
            Ok(Value::Series(Series::computed("", points)))
        }
        Value::Scalar(_) => err(format!("{f} takes a time series or an array of them")),
    }
}

/// Applies `f` to the series of `v` (one or an array).
fn each(v: Value, name: &str, f: impl Fn(&Series) -> BTreeMap<Millis, f64>) -> MResult<Value> {
    match v {
        Value::Series(s) => Ok(Value::Series(Series::computed(&s.label, f(&s)))),
        Value::Array(a) => Ok(Value::Array(
            a.iter().map(|s| Series::computed(&s.label, f(s))).collect(),
        )),
        Value::Scalar(_) => err(format!("{name} takes a time series or an array of them")),
    }
}

/// Consecutive points: f(previous (t, v), this (t, v)).
fn pairs(s: &Series, f: impl Fn((Millis, f64), (Millis, f64)) -> f64) -> BTreeMap<Millis, f64> {
    let p: Vec<(Millis, f64)> = s.points.iter().map(|(t, v)| (*t, *v)).collect();
    p.windows(2)
        .map(|w| (w[1].0, f(w[0], w[1])))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn arity(f: &str, args: &[Expr], min: usize, max: usize) -> MResult<()> {
    if args.len() < min || args.len() > max {
        let want = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return err(format!("{f} takes {want} arguments, not {}", args.len()));
    }
    Ok(())
}

fn call(f: &str, args: &[Expr], cx: &Context) -> MResult<Value> {
    match f {
        "METRICS" | "METRIC_COUNT" | "FIRST" | "LAST" | "REMOVE_EMPTY" | "SORT" | "SLICE" => {
            call_on_arrays(f, args, cx)
        }
        "PERIOD" | "TIME_SERIES" | "MINUTE" | "HOUR" | "DAY" | "DATE" | "MONTH" | "YEAR"
        | "EPOCH" => call_on_time(f, args, cx),
        _ => call_on_values(f, args, cx),
    }
}

/// The functions of arrays of time series (METRICS, METRIC_COUNT, FIRST, LAST,
/// REMOVE_EMPTY, SORT, SLICE).
fn call_on_arrays(f: &str, args: &[Expr], cx: &Context) -> MResult<Value> {
    let arg = |i: usize| eval(&args[i], cx);
    match f {
        "METRICS" => {
            arity(f, args, 0, 1)?;
            let filter = match args.first() {
                None => None,
                Some(Expr::Str(s)) => Some(s.clone()),
                Some(_) => return err("METRICS takes a string"),
            };
            Ok(Value::Array(
                cx.metrics
                    .iter()
                    .filter(|(id, _)| filter.as_ref().is_none_or(|s| id.contains(s.as_str())))
                    .map(|(_, s)| s.clone())
                    .collect(),
            ))
        }
        "METRIC_COUNT" => {
            arity(f, args, 1, 1)?;
            Ok(Value::Scalar(array(arg(0)?, f)?.len() as f64))
        }
        "FIRST" | "LAST" => {
            arity(f, args, 1, 1)?;
            let a = array(arg(0)?, f)?;
            let s = if f == "FIRST" { a.first() } else { a.last() };
            s.cloned()
                .map(Value::Series)
                .map_or_else(|| err(format!("{f} of an empty array")), Ok)
        }
        "REMOVE_EMPTY" => {
            arity(f, args, 1, 1)?;
            Ok(Value::Array(
                array(arg(0)?, f)?
                    .into_iter()
                    .filter(|s| !s.points.is_empty())
                    .collect(),
            ))
        }
        "SORT" => {
            arity(f, args, 3, 4)?;
            let a = array(arg(0)?, f)?;
            let by = match &args[1] {
                Expr::Word(w) if ["AVG", "MIN", "MAX", "SUM"].contains(&w.as_str()) => w.clone(),
                _ => return err("SORT sorts by AVG, MIN, MAX or SUM"),
            };
            let desc = match &args[2] {
                Expr::Word(w) if w == "ASC" => false,
                Expr::Word(w) if w == "DESC" => true,
                _ => return err("SORT's order is ASC or DESC"),
            };
            let mut keyed: Vec<(f64, Series)> = a
                .into_iter()
                .map(|s| {
                    let v: Vec<f64> = s.points.values().copied().collect();
                    (statistic(&by, &v), s)
                })
                .collect();
            keyed.sort_by(|x, y| x.0.total_cmp(&y.0));
            if desc {
                keyed.reverse();
            }
            let mut out: Vec<Series> = keyed.into_iter().map(|(_, s)| s).collect();
            if args.len() == 4 {
                let n = scalar(arg(3)?, f)?.max(0.0) as usize;
                out.truncate(n);
            }
            Ok(Value::Array(out))
        }
        "SLICE" => {
            arity(f, args, 2, 3)?;
            let a = array(arg(0)?, f)?;
            let from = (scalar(arg(1)?, f)?.max(0.0) as usize).min(a.len());
            let to = if args.len() == 3 {
                (scalar(arg(2)?, f)?.max(0.0) as usize).clamp(from, a.len())
            } else {
                a.len()
            };
            Ok(Value::Array(a[from..to].to_vec()))
        }
        other => err(format!("Unknown function {other}")),
    }
}

/// The functions of each value or each series (ABS … LOG10, the reductions, DIFF,
/// DIFF_TIME, RATE, RUNNING_SUM, FILL, IF).
fn call_on_values(f: &str, args: &[Expr], cx: &Context) -> MResult<Value> {
    let arg = |i: usize| eval(&args[i], cx);
    match f {
        "ABS" | "CEIL" | "FLOOR" | "LOG" | "LOG10" => {
            arity(f, args, 1, 1)?;
            let g: fn(f64) -> f64 = match f {
                "ABS" => f64::abs,
                "CEIL" => f64::ceil,
                "FLOOR" => f64::floor,
                "LOG" => f64::ln,
                _ => f64::log10,
            };
            unary(arg(0)?, g)
        }
        "AVG" | "SUM" | "MIN" | "MAX" | "STDDEV" | "DATAPOINT_COUNT" => {
            arity(f, args, 1, 1)?;
            reduce(f, arg(0)?)
        }
        "DIFF" => {
            arity(f, args, 1, 1)?;
            each(arg(0)?, f, |s| pairs(s, |a, b| b.1 - a.1))
        }
        "DIFF_TIME" => {
            arity(f, args, 1, 1)?;
            each(arg(0)?, f, |s| pairs(s, |a, b| (b.0 - a.0) as f64 / 1000.0))
        }
        "RATE" => {
            arity(f, args, 1, 1)?;
            each(arg(0)?, f, |s| {
                pairs(s, |a, b| (b.1 - a.1) / ((b.0 - a.0) as f64 / 1000.0))
            })
        }
        "RUNNING_SUM" => {
            arity(f, args, 1, 1)?;
            each(arg(0)?, f, |s| {
                let mut total = 0.0;
                s.points
                    .iter()
                    .map(|(t, v)| {
                        total += v;
                        (*t, total)
                    })
                    .collect()
            })
        }
        "FILL" => {
            arity(f, args, 2, 2)?;
            let how = match &args[1] {
                Expr::Word(w) if w == "REPEAT" || w == "LINEAR" => Fill::Word(w.clone()),
                other => match eval(other, cx)? {
                    Value::Scalar(x) => Fill::Scalar(x),
                    Value::Series(s) => Fill::Series(s),
                    Value::Array(_) => {
                        return err("FILL's filler is a scalar, a time series, REPEAT or LINEAR");
                    }
                },
            };
            each(arg(0)?, f, |s| fill(s, &how, &cx.grid))
        }
        "IF" => {
            arity(f, args, 2, 3)?;
            let cond = arg(0)?;
            let yes = arg(1)?;
            let no = if args.len() == 3 { Some(arg(2)?) } else { None };
            if_(cond, yes, no)
        }
        other => err(format!("Unknown function {other}")),
    }
}

/// The functions of time (PERIOD, TIME_SERIES, MINUTE … EPOCH).
fn call_on_time(f: &str, args: &[Expr], cx: &Context) -> MResult<Value> {
    let arg = |i: usize| eval(&args[i], cx);
    match f {
        "PERIOD" => {
            arity(f, args, 1, 1)?;
            let s = one_series(arg(0)?, f)?;
            s.period.map_or_else(
                || err("PERIOD takes a metric, not the result of an expression"),
                |p| Ok(Value::Scalar(p as f64 / 1000.0)),
            )
        }
        "TIME_SERIES" => {
            arity(f, args, 1, 1)?;
            let x = scalar(arg(0)?, f)?;
            Ok(Value::Series(Series::computed(
                "",
                cx.grid.iter().map(|t| (*t, x)).collect(),
            )))
        }
        "MINUTE" | "HOUR" | "DAY" | "DATE" | "MONTH" | "YEAR" | "EPOCH" => {
            arity(f, args, 1, 1)?;
            one_series(arg(0)?, f)?;
            let part = |t: Millis| -> f64 {
                use chrono::{Datelike, Timelike};
                let d = chrono::DateTime::from_timestamp_millis(t).unwrap_or_default();
                match f {
                    "MINUTE" => d.minute() as f64,
                    "HOUR" => d.hour() as f64,
                    "DAY" => d.weekday().number_from_monday() as f64,
                    "DATE" => d.day() as f64,
                    "MONTH" => d.month() as f64,
                    "YEAR" => d.year() as f64,
                    _ => (t / 1000) as f64,
                }
            };
            Ok(Value::Series(Series::computed(
                "",
                cx.grid.iter().map(|t| (*t, part(*t))).collect(),
            )))
        }
        other => err(format!("Unknown function {other}")),
    }
}

enum Fill {
    Scalar(f64),
    Series(Series),
    Word(String),
}

/// FILL: every timestamp of the grid without a value gets the filler's (a scalar, the
/// filler series' value there, the previous value (REPEAT) or the line between its
/// neighbours (LINEAR); none before the first value for those two).
fn fill(s: &Series, how: &Fill, grid: &[Millis]) -> BTreeMap<Millis, f64> {
    let mut out = s.points.clone();
    for t in grid {
        if out.contains_key(t) {
            continue;
        }
        let v = match how {
            Fill::Scalar(x) => Some(*x),
            Fill::Series(f) => f.points.get(t).copied(),
            Fill::Word(w) => {
                let before = s.points.range(..*t).next_back();
                let after = s.points.range(*t..).next();
                match (w.as_str(), before, after) {
                    ("REPEAT", Some((_, v)), _) => Some(*v),
                    ("LINEAR", Some((t0, v0)), Some((t1, v1))) => {
                        Some(v0 + (v1 - v0) * (*t - t0) as f64 / (t1 - t0) as f64)
                    }
                    _ => None,
                }
            }
        };
        if let Some(v) = v {
            out.insert(*t, v);
        }
    }
    out
}

/// IF as "Using IF expressions" defines it.
fn if_(cond: Value, yes: Value, no: Option<Value>) -> MResult<Value> {
    let truth = |x: f64| x != 0.0;
    match cond {
        Value::Scalar(c) => Ok(match (truth(c), no) {
            (true, _) => yes,
            (false, Some(n)) => n,
            (false, None) => Value::Series(Series::computed("", BTreeMap::new())),
        }),
        Value::Series(c) => {
            let mut points = BTreeMap::new();
            for (t, v) in &c.points {
                let pick = if truth(*v) {
                    match &yes {
                        Value::Scalar(x) => Some(*x),
                        // A true condition with no value there is 0.
                        Value::Series(s) => Some(s.points.get(t).copied().unwrap_or(0.0)),
                        Value::Array(_) => return err("IF takes time series, not arrays"),
                    }
                } else {
                    match &no {
                        None => None,
                        Some(Value::Scalar(x)) => Some(*x),
                        // A false condition with no value there is dropped.
                        Some(Value::Series(s)) => s.points.get(t).copied(),
                        Some(Value::Array(_)) => return err("IF takes time series, not arrays"),
                    }
                };
                if let Some(p) = pick {
                    points.insert(*t, p);
                }
            }
            Ok(Value::Series(Series::computed(&c.label, points)))
        }
        Value::Array(_) => err("IF's condition is a time series or a scalar"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(label: &str, points: &[(Millis, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.iter().copied().collect(),
            period: Some(60_000),
        }
    }

    fn run(
        expr: &str,
        values: &BTreeMap<String, Value>,
        metrics: &[(String, Series)],
    ) -> MResult<Value> {
        let cx = Context {
            values,
            metrics,
            grid: vec![0, 60_000, 120_000, 180_000],
        };
        eval(&parse(expr)?, &cx)
    }

    fn points(v: &Value) -> Vec<(Millis, f64)> {
        match v {
            Value::Series(s) => s.points.iter().map(|(t, v)| (*t, *v)).collect(),
            other => panic!("not a series: {other:?}"),
        }
    }

    fn setup() -> (BTreeMap<String, Value>, Vec<(String, Series)>) {
        // metric1 [30, 20, 0, 0], metric2 [20, -, 20, -] as in the guide's example.
        let m1 = ts(
            "m1",
            &[(0, 30.0), (60_000, 20.0), (120_000, 0.0), (180_000, 0.0)],
        );
        let m2 = ts("m2", &[(0, 20.0), (120_000, 20.0)]);
        let metrics = vec![
            ("m1".to_string(), m1.clone()),
            ("m2".to_string(), m2.clone()),
        ];
        let values = BTreeMap::from([
            ("m1".to_string(), Value::Series(m1)),
            ("m2".to_string(), Value::Series(m2)),
        ]);
        (values, metrics)
    }

    #[test]
    fn arithmetic_treats_missing_as_zero_and_drops_a_division_by_zero() {
        let (v, m) = setup();
        assert_eq!(
            points(&run("m1 + m2", &v, &m).unwrap()),
            [(0, 50.0), (60_000, 20.0), (120_000, 20.0), (180_000, 0.0)]
        );
        // 30/20, 20/0 dropped, 0/20, 0/0 dropped.
        assert_eq!(
            points(&run("m1 / m2", &v, &m).unwrap()),
            [(0, 1.5), (120_000, 0.0)]
        );
        assert_eq!(
            points(&run("-m1 * 2 + 100 / 4 ^ 2 * 16", &v, &m).unwrap())[0],
            (0, 40.0)
        );
        assert_eq!(points(&run("m1 - AVG(m1)", &v, &m).unwrap())[0], (0, 17.5));
        assert_eq!(run("PERIOD(m1) / 60", &v, &m).unwrap(), Value::Scalar(1.0));
    }

    #[test]
    fn comparisons_and_logic_as_the_guide_s_examples() {
        let (v, m) = setup();
        let vals = |e: &str| {
            points(&run(e, &v, &m).unwrap())
                .into_iter()
                .map(|p| p.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(vals("(m1 < m2)"), [0.0, 0.0, 1.0, 0.0]);
        assert_eq!(vals("(m1 >= 30)"), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(vals("(m1 > 15 AND m2 > 15)"), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(vals("IF(m1 > 15, 1, 0)"), [1.0, 1.0, 0.0, 0.0]);
        assert_eq!(vals("IF(m1 < 25, m1)"), [20.0, 0.0, 0.0]);
    }

    #[test]
    fn arrays_reduce_fill_sort_and_slice() {
        let (v, m) = setup();
        assert_eq!(
            points(&run("SUM(METRICS())", &v, &m).unwrap()),
            [(0, 50.0), (60_000, 20.0), (120_000, 20.0), (180_000, 0.0)]
        );
        // AVG over the array: a missing value counts as 0.
        assert_eq!(
            points(&run("AVG([m1, m2])", &v, &m).unwrap())[1],
            (60_000, 10.0)
        );
        assert_eq!(
            points(&run("MAX(METRICS(\"2\"))", &v, &m).unwrap()),
            [(0, 20.0), (120_000, 20.0)]
        );
        assert_eq!(
            points(&run("FILL(m2, 5)", &v, &m).unwrap()),
            [(0, 20.0), (60_000, 5.0), (120_000, 20.0), (180_000, 5.0)]
        );
        assert_eq!(
            points(&run("FILL(m2, REPEAT)", &v, &m).unwrap()),
            [(0, 20.0), (60_000, 20.0), (120_000, 20.0), (180_000, 20.0)]
        );
        assert_eq!(points(&run("FILL(m2, LINEAR)", &v, &m).unwrap()).len(), 3);
        let Value::Array(sorted) = run("SORT(METRICS(), SUM, DESC, 1)", &v, &m).unwrap() else {
            panic!()
        };
        assert_eq!(sorted.len(), 1);
        assert_eq!(sorted[0].label, "m1");
        assert_eq!(
            run("METRIC_COUNT(SLICE(METRICS(), 1))", &v, &m).unwrap(),
            Value::Scalar(1.0)
        );
        assert_eq!(points(&run("TIME_SERIES(7)", &v, &m).unwrap()).len(), 4);
        assert_eq!(
            points(&run("RUNNING_SUM(m1)", &v, &m).unwrap())[3],
            (180_000, 50.0)
        );
        assert_eq!(
            points(&run("RATE(m1)", &v, &m).unwrap())[0],
            (60_000, -10.0 / 60.0)
        );
        let Value::Array(scaled) = run("METRICS() * 100", &v, &m).unwrap() else {
            panic!()
        };
        assert_eq!(scaled[1].points[&0], 2000.0);
    }

    #[test]
    fn what_is_not_evaluated_is_refused_by_name() {
        let e = parse("ANOMALY_DETECTION_BAND(m1, 2)").unwrap_err();
        assert!(
            e.0.starts_with("Unsupported function ANOMALY_DETECTION_BAND"),
            "{e}"
        );
        let e = parse("SEARCH('{AWS/EC2} CPUUtilization', 'Average', 300)").unwrap_err();
        assert!(e.0.contains("SEARCH"), "{e}");
        let e = parse("avg(m1)").unwrap_err();
        assert!(e.0.contains("unexpected"), "{e}");
        let e = parse("FOO(m1)").unwrap_err();
        assert!(e.0.starts_with("Unknown function FOO"), "{e}");
        assert!(parse("m1 +").is_err());
        assert!(parse("(m1").is_err());
        let (v, m) = setup();
        assert!(run("m3 * 2", &v, &m).unwrap_err().0.contains("m3"));
        assert!(run("METRICS() + METRICS()", &v, &m).is_err());
    }
}
