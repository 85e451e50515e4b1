//! CloudWatch Logs filter patterns, for FilterLogEvents: terms, quoted phrases, `?`
//! alternatives, `-` exclusions, and JSON selectors (`{ $.level = "ERROR" && $.ms > 100 }`).
//! Not done (refused with InvalidParameterException, never matched loosely): space-delimited
//! patterns (`[ip, user, ...]`) and regular expressions (`%...%`).
//! Ref: https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html

use serde_json::Value;

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Empty: every event.
    All,
    /// Every `required` term, none of `excluded`; or, with `any`, at least one of them.
    Terms {
        required: Vec<String>,
        excluded: Vec<String>,
        any: Vec<String>,
    },
    Json(Expr),
}

/// A JSON selector expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Vec<Step>, Op, Literal),
    IsNull(Vec<Step>),
    Exists(Vec<Step>, bool),
    IsBool(Vec<Step>, bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Num(f64),
    Str(String),
}

/// Why a pattern does not parse.
#[derive(Debug, thiserror::Error)]
#[error("Invalid filter pattern {pattern:?}: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: String,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        let err = |why: &str| PatternError {
            pattern: s.to_string(),
            why: why.to_string(),
        };
        let t = s.trim();
        if t.is_empty() || t == "\"\"" {
            return Ok(Pattern::All);
        }
        if t.starts_with('{') {
            let inner = t
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| err("a JSON selector ends with }"))?;
            let mut p = JsonParser {
                s: inner.as_bytes(),
                i: 0,
            };
            let e = p.or().map_err(|w| err(&w))?;
            p.ws();
            if p.i != p.s.len() {
                return Err(err(&format!("unexpected text at {:?}", &inner[p.i..])));
            }
            return Ok(Pattern::Json(e));
        }
        if t.starts_with('[') {
            return Err(err(
                "space-delimited patterns ([...]) are not supported by minifargate",
            ));
        }
        if t.starts_with('%') {
            return Err(err(
                "regular expression patterns (%...%) are not supported by minifargate",
            ));
        }
        let (mut required, mut excluded, mut any) = (Vec::new(), Vec::new(), Vec::new());
        let b = t.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let kind = b[i];
            if kind == b'?' || kind == b'-' {
                i += 1;
            }
            let term = if i < b.len() && b[i] == b'"' {
                let end = t[i + 1..]
                    .find('"')
                    .ok_or_else(|| err("a quoted term is not closed"))?;
                let q = t[i + 1..i + 1 + end].to_string();
                i += end + 2;
                q
            } else {
                let start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                t[start..i].to_string()
            };
            if term.is_empty() {
                return Err(err("an empty term"));
            }
            match kind {
                b'?' => any.push(term),
                b'-' => excluded.push(term),
                _ => required.push(term),
            }
        }
        let plain = !required.is_empty() || !excluded.is_empty();
        if !any.is_empty() && plain {
            // Ref: the syntax page: "?" terms form an OR of terms; mixing them with
            // plain terms is not a documented form.
            return Err(err("mix of ? alternatives and other terms"));
        }
        Ok(Pattern::Terms {
            required,
            excluded,
            any,
        })
    }

    /// Whether the event with this message matches.
    pub fn matches(&self, message: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Terms {
                required,
                excluded,
                any,
            } => {
                if !any.is_empty() {
                    return any.iter().any(|t| message.contains(t.as_str()));
                }
                required.iter().all(|t| message.contains(t.as_str()))
                    && !excluded.iter().any(|t| message.contains(t.as_str()))
            }
            Pattern::Json(e) => match serde_json::from_str::<Value>(message.trim()) {
                Ok(v) => e.eval(&v),
                Err(_) => false,
            },
        }
    }
}

impl Expr {
    fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.eval(v) && b.eval(v),
            Expr::Or(a, b) => a.eval(v) || b.eval(v),
            Expr::IsNull(p) => matches!(select(v, p), Some(Value::Null)),
            Expr::Exists(p, want) => select(v, p).is_some() == *want,
            Expr::IsBool(p, want) => select(v, p) == Some(&Value::Bool(*want)),
            Expr::Cmp(p, op, lit) => {
                let Some(x) = select(v, p) else {
                    return false;
                };
                match lit {
                    Literal::Num(n) => {
                        let Some(x) = x.as_f64() else {
                            return false;
                        };
                        match op {
                            Op::Eq => x == *n,
                            Op::Ne => x != *n,
                            Op::Lt => x < *n,
                            Op::Le => x <= *n,
                            Op::Gt => x > *n,
                            Op::Ge => x >= *n,
                        }
                    }
                    Literal::Str(s) => {
                        let text = match x {
                            Value::String(t) => t.clone(),
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => return false,
                        };
                        match op {
                            Op::Eq => wildcard(s, &text),
                            Op::Ne => !wildcard(s, &text),
                            _ => false,
                        }
                    }
                }
            }
        }
    }
}

fn select<'a>(v: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get(k),
        Step::Index(i) => v.get(i),
    })
}

/// `*` matches any run of characters.
fn wildcard(pat: &str, text: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(tok.as_bytes()) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        self.ws();
        let end = self.i + w.len();
        if end <= self.s.len()
            && self.s[self.i..end].eq_ignore_ascii_case(w.as_bytes())
            && self.s.get(end).is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            self.i = end;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.atom()?));
        }
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                return Err("a ( is not closed".into());
            }
            return Ok(e);
        }
        let path = self.path()?;
        if self.eat_word("IS") {
            if self.eat_word("NULL") {
                return Ok(Expr::IsNull(path));
            }
            if self.eat_word("TRUE") {
                return Ok(Expr::IsBool(path, true));
            }
            if self.eat_word("FALSE") {
                return Ok(Expr::IsBool(path, false));
            }
            return Err("IS is followed by NULL, TRUE or FALSE".into());
        }
        if self.eat_word("NOT") {
            if self.eat_word("EXISTS") {
                return Ok(Expr::Exists(path, false));
            }
            return Err("NOT is followed by EXISTS".into());
        }
        if self.eat_word("EXISTS") {
            return Ok(Expr::Exists(path, true));
        }
        let op = if self.eat("!=") {
            Op::Ne
        } else if self.eat("<=") {
            Op::Le
        } else if self.eat(">=") {
            Op::Ge
        } else if self.eat("=") {
            Op::Eq
        } else if self.eat("<") {
            Op::Lt
        } else if self.eat(">") {
            Op::Gt
        } else {
            return Err("a selector is followed by =, !=, <, <=, >, >=, IS or EXISTS".into());
        };
        let lit = self.literal()?;
        if matches!(lit, Literal::Str(_)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err("strings compare with = or != only".into());
        }
        Ok(Expr::Cmp(path, op, lit))
    }

    fn path(&mut self) -> Result<Vec<Step>, String> {
        self.ws();
        if !self.eat("$") {
            return Err("a selector starts with $".into());
        }
        let mut steps = Vec::new();
        loop {
            if self.s.get(self.i) == Some(&b'.') {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric()
                        || matches!(self.s[self.i], b'_' | b'-' | b'@' | b'$'))
                {
                    self.i += 1;
                }
                if start == self.i {
                    return Err("a . is followed by a key".into());
                }
                steps.push(Step::Key(
                    String::from_utf8_lossy(&self.s[start..self.i]).into(),
                ));
            } else if self.s.get(self.i) == Some(&b'[') {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or("an index is a number")?;
                if self.s.get(self.i) != Some(&b']') {
                    return Err("a [ is not closed".into());
                }
                self.i += 1;
                steps.push(Step::Index(n));
            } else {
                break;
            }
        }
        if steps.is_empty() {
            return Err("a selector names a field ($.field)".into());
        }
        Ok(steps)
    }

    fn literal(&mut self) -> Result<Literal, String> {
        self.ws();
        if self.s.get(self.i) == Some(&b'"') {
            let start = self.i + 1;
            let end = self.s[start..]
                .iter()
                .position(|&c| c == b'"')
                .ok_or("a quoted value is not closed")?;
            self.i = start + end + 1;
            return Ok(Literal::Str(
                String::from_utf8_lossy(&self.s[start..start + end]).into(),
            ));
        }
        let start = self.i;
        while self.i < self.s.len()
            && !self.s[self.i].is_ascii_whitespace()
            && !matches!(self.s[self.i], b')' | b'&' | b'|')
        {
            self.i += 1;
        }
        let word = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        if word.is_empty() {
            return Err("a comparison needs a value".into());
        }
        Ok(match word.parse::<f64>() {
            Ok(n) => Literal::Num(n),
            Err(_) => Literal::Str(word),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, msg: &str) -> bool {
        Pattern::parse(p).unwrap().matches(msg)
    }

    #[test]
    fn terms_phrases_alternatives_and_exclusions() {
        assert!(m("", "anything"));
        assert!(m("ERROR", "an ERROR here"));
        assert!(!m("ERROR", "an error here"), "terms are case-sensitive");
        assert!(m("ERROR ARGUMENTS", "ERROR: bad ARGUMENTS"));
        assert!(!m("ERROR ARGUMENTS", "ERROR only"));
        assert!(m("\"Internal Server Error\"", "500 Internal Server Error"));
        assert!(!m("\"Internal Server Error\"", "Internal Error Server"));
        assert!(m("?ERROR ?WARN", "WARN disk"));
        assert!(!m("?ERROR ?WARN", "INFO ok"));
        assert!(m("ERROR -Exiting", "ERROR retrying"));
        assert!(!m("ERROR -Exiting", "ERROR Exiting now"));
    }

    #[test]
    fn json_selectors() {
        let ev = r#"{"level":"ERROR","ms":250,"user":{"id":"u-17","admin":false},"tags":["a","b"],"gone":null}"#;
        assert!(m(r#"{ $.level = "ERROR" }"#, ev));
        assert!(m("{ $.level = ERROR }", ev));
        assert!(!m(r#"{ $.level = "INFO" }"#, ev));
        assert!(m(r#"{ $.level != "INFO" }"#, ev));
        assert!(m("{ $.ms > 100 }", ev));
        assert!(!m("{ $.ms < 100 }", ev));
        assert!(m("{ $.ms >= 250 && $.ms <= 250 }", ev));
        assert!(m(r#"{ $.user.id = "u-*" }"#, ev));
        assert!(m(r#"{ $.tags[1] = "b" }"#, ev));
        assert!(m(r#"{ ($.level = "INFO") || ($.ms = 250) }"#, ev));
        assert!(m("{ $.gone IS NULL }", ev));
        assert!(m("{ $.user.admin IS FALSE }", ev));
        assert!(m("{ $.nope NOT EXISTS }", ev));
        assert!(m("{ $.user EXISTS }", ev));
        assert!(!m(r#"{ $.level = "ERROR" }"#, "not json ERROR"));
    }

    #[test]
    fn unsupported_and_broken_patterns_are_refused() {
        for p in [
            "[ip, user]",
            "%ERR.*%",
            "{ $.a = }",
            "{ level = 1 }",
            "\"open",
            "{ $.a > \"x\" }",
        ] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
    }
}
