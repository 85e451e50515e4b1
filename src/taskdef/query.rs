//! ECS's cluster query language (ListContainerInstances `filter`; later `memberOf`):
//! `subject operator [argument]` expressions joined with `and`/`&&`, `or`/`||`, negated
//! with `not`/`!`, grouped with parentheses. Ref: AWS ECS developer guide, "Create
//! expressions to define container instances for Amazon ECS tasks"
//! (developerguide/cluster-query-language.html): subjects `agentConnected`,
//! `agentVersion`, `attribute:NAME`, `ec2InstanceId`, `registeredAt`,
//! `runningTasksCount`, `task:group`; operators `==`/`equals`, `!=`/`not_equals`,
//! `>`/`greater_than`, `>=`/`greater_than_equal`, `<`/`less_than`,
//! `<=`/`less_than_equal`, `exists`, `!exists`/`not_exists`, `in`, `!in`/`not_in`,
//! `=~`/`matches`, `!~`/`not_matches`; lists as `[a, b]` or `(a, b)`.
//!
//! A query is answered by anything that implements [`Subjects`]: a registered
//! [`super::instances::Instance`] (ListContainerInstances) or a placement
//! [`crate::ecs::placement::Candidate`] (`memberOf`, where `task:group` names the groups of the
//! tasks the instance runs).

/// What a query asks of a container instance: one value per subject, and the groups of
/// the tasks it runs (`task:group`).
pub trait Subjects {
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> &str;
    /// `ec2InstanceId` (the box's EC2 instance id, `i-…`).
    fn ec2_instance_id(&self) -> &str;
    fn registered_at_ms(&self) -> i64;
    fn running_tasks_count(&self) -> i64;
    /// The attribute `name`'s value: `Some(None)` for one without a value.
    fn attribute_value(&self, name: &str) -> Option<Option<&str>>;
    /// The `group` of every task that runs (or is to run) on the instance.
    fn task_groups(&self) -> Vec<&str>;
}

impl<T: Subjects + ?Sized> Subjects for &T {
    fn agent_connected(&self) -> bool {
        (**self).agent_connected()
    }
    fn agent_version(&self) -> &str {
        (**self).agent_version()
    }
    fn ec2_instance_id(&self) -> &str {
        (**self).ec2_instance_id()
    }
    fn registered_at_ms(&self) -> i64 {
        (**self).registered_at_ms()
    }
    fn running_tasks_count(&self) -> i64 {
        (**self).running_tasks_count()
    }
    fn attribute_value(&self, name: &str) -> Option<Option<&str>> {
        (**self).attribute_value(name)
    }
    fn task_groups(&self) -> Vec<&str> {
        (**self).task_groups()
    }
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the expression is empty")]
    Empty,
    #[error("at {at:?}: expected {expected}")]
    Unexpected { at: String, expected: &'static str },
    #[error(
        "unknown subject {0:?}: one of agentConnected, agentVersion, attribute:NAME, \
         ec2InstanceId, registeredAt, runningTasksCount, task:group"
    )]
    UnknownSubject(String),
    #[error("unknown operator {0:?} (==, !=, >, >=, <, <=, exists, !exists, in, !in, =~, !~)")]
    UnknownOperator(String),
    #[error("{subject} does not take the operator {op}")]
    OperatorNotFor { subject: String, op: &'static str },
    #[error("{subject}: {value:?} is not {what}")]
    BadValue {
        subject: String,
        value: String,
        what: &'static str,
    },
    #[error("{pattern:?} is not a regular expression: {why}")]
    BadPattern { pattern: String, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "==" | "equals" => Op::Eq,
            "!=" | "not_equals" => Op::Ne,
            ">" | "greater_than" => Op::Gt,
            ">=" | "greater_than_equal" => Op::Ge,
            "<" | "less_than" => Op::Lt,
            "<=" | "less_than_equal" => Op::Le,
            "exists" => Op::Exists,
            "!exists" | "not_exists" => Op::NotExists,
            "in" => Op::In,
            "!in" | "not_in" => Op::NotIn,
            "=~" | "matches" => Op::Matches,
            "!~" | "not_matches" => Op::NotMatches,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Exists => "exists",
            Op::NotExists => "!exists",
            Op::In => "in",
            Op::NotIn => "!in",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        }
    }
    fn ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    AgentConnected,
    AgentVersion,
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    None,
    One(String),
    List(Vec<String>),
}

/// A parsed filter.
#[derive(Debug, Clone)]
pub struct Query(Expr);

#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        subject: Subject,
        op: Op,
        arg: Arg,
        /// For `=~`/`!~`: the whole value must match.
        pattern: Option<regex::Regex>,
    },
}

/// Splits an expression into tokens: parentheses, brackets, commas, operators made of
/// symbols, quoted strings and words.
fn tokens(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_word = |ch: char| !ch.is_whitespace() && !"()[],=!<>~&|'\"".contains(ch);
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if "()[],".contains(ch) {
            out.push(ch.to_string());
            i += 1;
        } else if ch == '\'' || ch == '"' {
            let end = c[i + 1..]
                .iter()
                .position(|&x| x == ch)
                .map_or(c.len(), |p| i + 1 + p);
            // A quoted word keeps its quote mark first, so it is never an operator.
            out.push(format!("'{}", c[i + 1..end].iter().collect::<String>()));
            i = end + 1;
        } else if is_word(ch) {
            let start = i;
            while i < c.len() && is_word(c[i]) {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["==", "!=", ">=", "<=", "=~", "!~", "&&", "||"].contains(&two.as_str()) {
                out.push(two);
                i += 2;
            } else if ch == '!' {
                // `!in` and `!exists` are operators; another `!` is `not`.
                let rest: String = c[i + 1..].iter().take_while(|x| is_word(**x)).collect();
                if rest == "in" || rest == "exists" {
                    out.push(format!("!{rest}"));
                    i += 1 + rest.len();
                } else {
                    out.push("!".into());
                    i += 1;
                }
            } else {
                out.push(ch.to_string());
                i += 1;
            }
        }
    }
    out
}

struct Parser {
    toks: Vec<String>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.at).map(String::as_str)
    }
    fn next(&mut self) -> Option<String> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn unexpected(&self, expected: &'static str) -> QueryError {
        QueryError::Unexpected {
            at: self.toks[self.at.min(self.toks.len())..].join(" "),
            expected,
        }
    }
    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut q = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.at += 1;
            q = Expr::Or(Box::new(q), Box::new(self.and()?));
        }
        Ok(q)
    }
    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut q = self.unary()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.at += 1;
            q = Expr::And(Box::new(q), Box::new(self.unary()?));
        }
        Ok(q)
    }
    fn unary(&mut self) -> Result<Expr, QueryError> {
        match self.peek() {
            Some("not" | "!") => {
                self.at += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some("(") => {
                self.at += 1;
                let q = self.or()?;
                if self.next().as_deref() != Some(")") {
                    self.at -= 1;
                    return Err(self.unexpected("`)`"));
                }
                Ok(q)
            }
            Some(_) => self.cmp(),
            None => Err(self.unexpected("an expression")),
        }
    }
    fn value(&mut self, expected: &'static str) -> Result<String, QueryError> {
        match self.next() {
            Some(t) if t.starts_with('\'') => Ok(t[1..].to_string()),
            Some(t)
                if !["(", ")", "[", "]", ","].contains(&t.as_str())
                    && !t.chars().all(|c| "=!<>~&|".contains(c)) =>
            {
                Ok(t)
            }
            _ => {
                self.at -= 1;
                Err(self.unexpected(expected))
            }
        }
    }
    fn cmp(&mut self) -> Result<Expr, QueryError> {
        let s = self.value("a subject")?;
        let subject = match s.as_str() {
            "agentConnected" => Subject::AgentConnected,
            "agentVersion" => Subject::AgentVersion,
            "ec2InstanceId" => Subject::Ec2InstanceId,
            "registeredAt" => Subject::RegisteredAt,
            "runningTasksCount" => Subject::RunningTasksCount,
            "task:group" => Subject::TaskGroup,
            other => match other.strip_prefix("attribute:") {
                Some(n) if !n.is_empty() => Subject::Attribute(n.into()),
                _ => return Err(QueryError::UnknownSubject(other.into())),
            },
        };
        let o = self.next().ok_or_else(|| self.unexpected("an operator"))?;
        let op = Op::parse(&o).ok_or(QueryError::UnknownOperator(o))?;
        let allowed = match &subject {
            Subject::Attribute(_) | Subject::TaskGroup => true,
            Subject::AgentConnected | Subject::Ec2InstanceId => matches!(
                op,
                Op::Eq | Op::Ne | Op::In | Op::NotIn | Op::Matches | Op::NotMatches
            ),
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
                op.ordering() || matches!(op, Op::Eq | Op::Ne)
            }
        };
        if !allowed {
            return Err(QueryError::OperatorNotFor {
                subject: s,
                op: op.name(),
            });
        }
        let arg = match op {
            Op::Exists | Op::NotExists => Arg::None,
            Op::In | Op::NotIn => {
                let close = match self.next().as_deref() {
                    Some("[") => "]",
                    Some("(") => ")",
                    _ => {
                        self.at -= 1;
                        return Err(self.unexpected("a list: [a, b] or (a, b)"));
                    }
                };
                let mut items = Vec::new();
                loop {
                    items.push(self.value("a list item")?);
                    match self.next().as_deref() {
                        Some(",") => continue,
                        Some(c) if c == close => break,
                        _ => {
                            self.at -= 1;
                            return Err(self.unexpected("`,` or the end of the list"));
                        }
                    }
                }
                Arg::List(items)
            }
            _ => Arg::One(self.value("a value")?),
        };
        // Check the values the subject compares with now, not per instance.
        let values: Vec<&String> = match &arg {
            Arg::One(v) => vec![v],
            Arg::List(l) => l.iter().collect(),
            Arg::None => vec![],
        };
        for v in &values {
            let bad = |what| QueryError::BadValue {
                subject: s.clone(),
                value: (*v).clone(),
                what,
            };
            match subject {
                Subject::RunningTasksCount if v.parse::<i64>().is_err() => {
                    return Err(bad("a whole number"));
                }
                Subject::RegisteredAt if date_ms(v).is_none() => {
                    return Err(bad(
                        "a date (2018-06-18T22:28:28+00:00, 2018-06-18T22:28:28Z, 2018-06-18T22:28:28 or 2018-06-18)",
                    ));
                }
                Subject::AgentConnected
                    if !matches!(op, Op::Matches | Op::NotMatches)
                        && v.as_str() != "true"
                        && v.as_str() != "false" =>
                {
                    return Err(bad("true or false"));
                }
                _ => {}
            }
        }
        let pattern = match (&op, &arg) {
            (Op::Matches | Op::NotMatches, Arg::One(p)) => {
                Some(regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    QueryError::BadPattern {
                        pattern: p.clone(),
                        why: e.to_string(),
                    }
                })?)
            }
            _ => None,
        };
        Ok(Expr::Cmp {
            subject,
            op,
            arg,
            pattern,
        })
    }
}

/// A date of the query language as ms since the epoch (UTC when no offset is given).
fn date_ms(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Some(t.and_utc().timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// Dotted version numbers compared number by number (`1.10.0` > `1.9.2`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<u64> {
        s.trim_start_matches('v')
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parts(a).cmp(&parts(b))
}

impl Query {
    /// Parses `filter`.
    pub fn parse(filter: &str) -> Result<Query, QueryError> {
        let toks = tokens(filter);
        if toks.is_empty() {
            return Err(QueryError::Empty);
        }
        let mut p = Parser { toks, at: 0 };
        let q = p.or()?;
        if p.at < p.toks.len() {
            return Err(p.unexpected("`and`, `or` or the end of the expression"));
        }
        Ok(Query(q))
    }

    /// Whether instance `i` is selected.
    pub fn matches(&self, i: &impl Subjects) -> bool {
        self.0.matches(i)
    }
}

impl Expr {
    fn matches(&self, i: &impl Subjects) -> bool {
        match self {
            Expr::And(a, b) => a.matches(i) && b.matches(i),
            Expr::Or(a, b) => a.matches(i) || b.matches(i),
            Expr::Not(q) => !q.matches(i),
            Expr::Cmp {
                subject,
                op,
                arg,
                pattern,
            } => {
                use std::cmp::Ordering;
                // Every value the instance has for the subject: none when it lacks it;
                // several for task:group (one per task).
                let have: Vec<String> = match subject {
                    Subject::AgentConnected => vec![i.agent_connected().to_string()],
                    Subject::AgentVersion => vec![i.agent_version().to_string()],
                    Subject::Ec2InstanceId => vec![i.ec2_instance_id().to_string()],
                    Subject::RegisteredAt => vec![i.registered_at_ms().to_string()],
                    Subject::RunningTasksCount => vec![i.running_tasks_count().to_string()],
                    Subject::Attribute(n) => i
                        .attribute_value(n)
                        .map(|v| v.unwrap_or_default().to_string())
                        .into_iter()
                        .collect(),
                    Subject::TaskGroup => i.task_groups().into_iter().map(String::from).collect(),
                };
                let cmp = |h: &str, v: &str| -> Ordering {
                    match subject {
                        Subject::RunningTasksCount => h
                            .parse::<i64>()
                            .unwrap_or(0)
                            .cmp(&v.parse::<i64>().unwrap_or(0)),
                        Subject::RegisteredAt => {
                            h.parse::<i64>().unwrap_or(0).cmp(&date_ms(v).unwrap_or(0))
                        }
                        Subject::AgentVersion => version_cmp(h, v),
                        _ => match (h.parse::<f64>(), v.parse::<f64>()) {
                            (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
                            _ => h.cmp(v),
                        },
                    }
                };
                let one = || match arg {
                    Arg::One(v) => v.as_str(),
                    _ => "",
                };
                let in_list = |h: &str| match arg {
                    Arg::List(l) => l.iter().any(|v| cmp(h, v) == Ordering::Equal),
                    _ => false,
                };
                // A positive test holds when one of the values passes it; its negation
                // (`!=`, `!in`, `!~`) when none does (so also when there is no value).
                let any = |f: &dyn Fn(&str) -> bool| have.iter().any(|h| f(h));
                match op {
                    Op::Exists => !have.is_empty(),
                    Op::NotExists => have.is_empty(),
                    Op::Eq => any(&|h| cmp(h, one()) == Ordering::Equal),
                    Op::Ne => !any(&|h| cmp(h, one()) == Ordering::Equal),
                    Op::Gt => any(&|h| cmp(h, one()) == Ordering::Greater),
                    Op::Ge => any(&|h| cmp(h, one()) != Ordering::Less),
                    Op::Lt => any(&|h| cmp(h, one()) == Ordering::Less),
                    Op::Le => any(&|h| cmp(h, one()) != Ordering::Greater),
                    Op::In => any(&in_list),
                    Op::NotIn => !any(&in_list),
                    Op::Matches => any(&|h| pattern.as_ref().is_some_and(|p| p.is_match(h))),
                    Op::NotMatches => !any(&|h| pattern.as_ref().is_some_and(|p| p.is_match(h))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A container instance as a query sees it (a test double of `Subjects`, so that these
    /// tests need neither an etcd record nor a placement candidate).
    struct Box_ {
        connected: bool,
        attributes: BTreeMap<String, Option<String>>,
        groups: Vec<&'static str>,
    }

    impl Subjects for Box_ {
        fn agent_connected(&self) -> bool {
            self.connected
        }
        fn agent_version(&self) -> &str {
            "1.4.0"
        }
        fn ec2_instance_id(&self) -> &str {
            "edge-1"
        }
        fn registered_at_ms(&self) -> i64 {
            1_700_000_000_000
        }
        fn running_tasks_count(&self) -> i64 {
            self.groups.len() as i64
        }
        fn attribute_value(&self, name: &str) -> Option<Option<&str>> {
            self.attributes.get(name).map(Option::as_deref)
        }
        fn task_groups(&self) -> Vec<&str> {
            self.groups.clone()
        }
    }

    fn box_(color: Option<&str>, connected: bool) -> Box_ {
        let mut attributes = BTreeMap::new();
        attributes.insert("ecs.os-type".to_string(), Some("linux".to_string()));
        if let Some(c) = color {
            attributes.insert("color".to_string(), Some(c.to_string()));
        }
        attributes.insert("gpu".to_string(), None);
        Box_ {
            connected,
            attributes,
            groups: Vec::new(),
        }
    }

    fn q(s: &str) -> Query {
        Query::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn comparisons_lists_and_logic() {
        let blue = box_(Some("blue"), true);
        let red = box_(Some("red"), false);
        let none = box_(None, true);
        for (f, want) in [
            ("attribute:color == blue", [true, false, false]),
            ("attribute:color equals 'blue'", [true, false, false]),
            ("attribute:color != blue", [false, true, true]),
            ("attribute:color exists", [true, true, false]),
            ("attribute:color !exists", [false, false, true]),
            ("attribute:gpu exists", [true, true, true]),
            ("attribute:color in [blue, red]", [true, true, false]),
            ("attribute:color !in (blue)", [false, true, true]),
            ("attribute:color =~ bl.*", [true, false, false]),
            ("agentConnected == false", [false, true, false]),
            (
                "attribute:color == blue or agentConnected == false",
                [true, true, false],
            ),
            (
                "not (attribute:color == blue) && attribute:color exists",
                [false, true, false],
            ),
            ("runningTasksCount == 0", [true, true, true]),
            ("runningTasksCount > 0", [false, false, false]),
            ("registeredAt < 2024-01-01", [true, true, true]),
            ("registeredAt >= 2023-11-14T22:13:20Z", [true, true, true]),
            ("ec2InstanceId in [edge-1, edge-2]", [true, true, true]),
            ("attribute:ecs.os-type == linux", [true, true, true]),
            (
                "agentVersion >= 1.4.0 and agentVersion < 1.10",
                [true, true, true],
            ),
        ] {
            let query = q(f);
            let got = [&blue, &red, &none].map(|i| query.matches(i));
            assert_eq!(got, want, "{f}");
        }
    }

    #[test]
    fn refusals_name_the_cause() {
        for (f, want) in [
            ("", QueryError::Empty),
            ("color == blue", QueryError::UnknownSubject("color".into())),
            (
                "attribute:color ~= blue",
                QueryError::UnknownOperator("~".into()),
            ),
            (
                "runningTasksCount == many",
                QueryError::BadValue {
                    subject: "runningTasksCount".into(),
                    value: "many".into(),
                    what: "a whole number",
                },
            ),
            (
                "agentConnected > true",
                QueryError::OperatorNotFor {
                    subject: "agentConnected".into(),
                    op: ">",
                },
            ),
        ] {
            assert_eq!(Query::parse(f).unwrap_err(), want, "{f}");
        }
        assert!(matches!(
            Query::parse("attribute:a == b and"),
            Err(QueryError::Unexpected { .. })
        ));
        assert!(matches!(
            Query::parse("attribute:a === b"),
            Err(QueryError::Unexpected {
                expected: "a value",
                ..
            })
        ));
        assert!(matches!(
            Query::parse("attribute:a in [b, c"),
            Err(QueryError::Unexpected { .. })
        ));
        assert!(matches!(
            Query::parse("attribute:a =~ '('"),
            Err(QueryError::BadPattern { .. })
        ));
    }

    #[test]
    fn task_group_is_any_task_of_the_instance() {
        let mut web = box_(None, true);
        web.groups = vec!["service:web", "family:batch"];
        let idle = box_(None, true);
        for (f, want) in [
            ("task:group == service:web", [true, false]),
            ("task:group == family:batch", [true, false]),
            ("task:group != service:web", [false, true]),
            ("task:group exists", [true, false]),
            ("task:group in [service:api, service:web]", [true, false]),
            ("not task:group =~ service:.*", [false, true]),
            ("runningTasksCount == 2", [true, false]),
        ] {
            let query = q(f);
            assert_eq!([&web, &idle].map(|i| query.matches(i)), want, "{f}");
        }
    }
}
