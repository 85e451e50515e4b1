//! The AWS CLI's shorthand syntax for structure options (`name=FARGATE,weight=1`,
//! `awsvpcConfiguration={subnets=[subnet-1,subnet-2],assignPublicIp=ENABLED}`), parsed to
//! JSON, and the typing of its values by the operation's input shape (`weight=1` is a
//! number because the model says so).
//!
//! Ref: awscli `awscli/shorthand.py` (grammar: `key=value` pairs joined by `,`; a value is
//! a literal, a `[…]` list, a `{…}` hash, or a comma-separated list running up to the next
//! `key=`; literals may be quoted with `'` or `"`).

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{message} at character {at} of {input:?}")]
pub struct ShorthandError {
    pub message: String,
    pub at: usize,
    pub input: String,
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
    input: &'a str,
}

/// Parses `k=v,k2=[a,b],k3={x=y}` into a JSON object of strings, lists and objects.
pub fn parse(input: &str) -> Result<Value, ShorthandError> {
    let chars: Vec<char> = input.chars().collect();
    let mut p = Parser {
        s: &chars,
        i: 0,
        input,
    };
    let v = p.params(None)?;
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err("unexpected character"));
    }
    Ok(v)
}

impl Parser<'_> {
    fn err(&self, message: &str) -> ShorthandError {
        ShorthandError {
            message: message.to_string(),
            at: self.i,
            input: self.input.to_string(),
        }
    }

    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    /// `keyval *("," keyval)`, up to `close` (`}`) or the end.
    fn params(&mut self, close: Option<char>) -> Result<Value, ShorthandError> {
        let mut obj = Map::new();
        loop {
            self.ws();
            let key = self.key()?;
            self.ws();
            if self.peek() != Some('=') {
                return Err(self.err("expected '=' after a key"));
            }
            self.i += 1;
            let v = self.values(close)?;
            obj.insert(key, v);
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                c if c == close || c.is_none() => return Ok(Value::Object(obj)),
                _ => return Err(self.err("expected ',' between key=value pairs")),
            }
        }
    }

    fn key(&mut self) -> Result<String, ShorthandError> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "-_.#/:".contains(c))
        {
            self.i += 1;
        }
        if start == self.i {
            return Err(self.err("expected a key"));
        }
        Ok(self.s[start..self.i].iter().collect())
    }

    /// A value after `key=`: a list, a hash, or literals (a csv list while the next
    /// comma-separated item is not itself `key=`).
    fn values(&mut self, close: Option<char>) -> Result<Value, ShorthandError> {
        self.ws();
        match self.peek() {
            Some('[') => self.list(),
            Some('{') => {
                self.i += 1;
                let v = self.params(Some('}'))?;
                if self.peek() != Some('}') {
                    return Err(self.err("expected '}'"));
                }
                self.i += 1;
                Ok(v)
            }
            _ => {
                let first = self.literal(&[',', ']', '}'])?;
                let mut items = vec![Value::String(first)];
                while self.peek() == Some(',') && !self.next_is_key() {
                    self.i += 1;
                    if close.is_some() && self.peek() == close {
                        break;
                    }
                    items.push(Value::String(self.literal(&[',', ']', '}'])?));
                }
                Ok(if items.len() == 1 {
                    items.pop().expect("one item")
                } else {
                    Value::Array(items)
                })
            }
        }
    }

    /// After a `,`: does a `key=` follow?
    fn next_is_key(&self) -> bool {
        let mut j = self.i + 1;
        while self.s.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        let start = j;
        while self
            .s
            .get(j)
            .is_some_and(|c| c.is_ascii_alphanumeric() || "-_.#/:".contains(*c))
        {
            j += 1;
        }
        j > start && self.s.get(j) == Some(&'=')
    }

    fn list(&mut self) -> Result<Value, ShorthandError> {
        self.i += 1; // '['
        let mut items = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.err("expected ']'")),
                Some('{') => {
                    self.i += 1;
                    items.push(self.params(Some('}'))?);
                    if self.peek() != Some('}') {
                        return Err(self.err("expected '}'"));
                    }
                    self.i += 1;
                }
                Some('[') => items.push(self.list()?),
                _ => items.push(Value::String(self.literal(&[',', ']'])?)),
            }
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some(']') => {}
                _ => return Err(self.err("expected ',' or ']' in a list")),
            }
        }
    }

    fn literal(&mut self, stops: &[char]) -> Result<String, ShorthandError> {
        self.ws();
        if let Some(q @ ('\'' | '"')) = self.peek() {
            self.i += 1;
            let mut out = String::new();
            loop {
                match self.peek() {
                    None => return Err(self.err("unterminated quoted value")),
                    Some('\\') if self.s.get(self.i + 1) == Some(&q) => {
                        out.push(q);
                        self.i += 2;
                    }
                    Some(c) if c == q => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        }
        let start = self.i;
        while self.peek().is_some_and(|c| !stops.contains(&c)) {
            self.i += 1;
        }
        Ok(self.s[start..self.i]
            .iter()
            .collect::<String>()
            .trim()
            .to_string())
    }
}

/// Types shorthand strings by `shape` (a skeleton value: `0` integers, `true` booleans,
/// `[x]` lists of x, objects; `{"KeyName": x}` a map), as botocore does with the model.
/// `at` names the option for messages.
pub fn typed(v: Value, shape: &Value, at: &str) -> Result<Value, String> {
    Ok(match (v, shape) {
        (Value::String(s), Value::Number(n)) => {
            if n.is_f64() {
                s.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{at}: {s:?} is not a number"))?
            } else {
                Value::Number(
                    s.parse::<i64>()
                        .map_err(|_| format!("{at}: {s:?} is not an integer"))?
                        .into(),
                )
            }
        }
        (Value::String(s), Value::Bool(_)) => match s.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("{at}: {s:?} is not true or false")),
        },
        (Value::Array(items), Value::Array(el)) => {
            let el = el.first().cloned().unwrap_or(Value::Null);
            Value::Array(
                items
                    .into_iter()
                    .map(|i| typed(i, &el, at))
                    .collect::<Result<_, _>>()?,
            )
        }
        // `subnets=subnet-1` is a list of one.
        (scalar, Value::Array(el)) if !scalar.is_object() => {
            let el = el.first().cloned().unwrap_or(Value::Null);
            Value::Array(vec![typed(scalar, &el, at)?])
        }
        (Value::Object(m), Value::Object(shape)) => {
            let map_value = (shape.len() == 1).then(|| shape.get("KeyName")).flatten();
            let mut out = Map::new();
            for (k, v) in m {
                let sub = match map_value {
                    Some(mv) => Some(mv),
                    None => shape.get(&k),
                };
                let v = match sub {
                    Some(sub) => typed(v, sub, &format!("{at}.{k}"))?,
                    None => v,
                };
                out.insert(k, v);
            }
            Value::Object(out)
        }
        (v, _) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_aws_cli_shorthand_forms() {
        assert_eq!(
            parse("capacityProvider=FARGATE,weight=1,base=0").unwrap(),
            json!({"capacityProvider": "FARGATE", "weight": "1", "base": "0"})
        );
        assert_eq!(
            parse("awsvpcConfiguration={subnets=[subnet-1,subnet-2],securityGroups=[sg-1],assignPublicIp=ENABLED}").unwrap(),
            json!({"awsvpcConfiguration": {"subnets": ["subnet-1", "subnet-2"], "securityGroups": ["sg-1"], "assignPublicIp": "ENABLED"}})
        );
        // A csv list runs up to the next key=.
        assert_eq!(
            parse("subnets=a,b,c,assignPublicIp=DISABLED").unwrap(),
            json!({"subnets": ["a", "b", "c"], "assignPublicIp": "DISABLED"})
        );
        assert_eq!(
            parse("key=team,value='a,b'").unwrap(),
            json!({"key": "team", "value": "a,b"})
        );
        assert_eq!(
            parse("deploymentCircuitBreaker={enable=true,rollback=false},maximumPercent=200")
                .unwrap(),
            json!({"deploymentCircuitBreaker": {"enable": "true", "rollback": "false"}, "maximumPercent": "200"})
        );
        assert_eq!(parse("k=").unwrap(), json!({"k": ""}));
        let e = parse("weight").unwrap_err();
        assert_eq!(e.message, "expected '=' after a key");
        assert!(parse("a=[x,y").is_err());
        assert!(parse("a={b=c").is_err());
    }

    #[test]
    fn values_are_typed_by_the_model() {
        let shape = json!({"capacityProvider": "", "weight": 0, "base": 0});
        let v = typed(
            parse("capacityProvider=FARGATE,weight=2").unwrap(),
            &shape,
            "x",
        )
        .unwrap();
        assert_eq!(v, json!({"capacityProvider": "FARGATE", "weight": 2}));
        let e = typed(
            parse("weight=heavy").unwrap(),
            &shape,
            "--capacity-provider-strategy",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "--capacity-provider-strategy.weight: \"heavy\" is not an integer"
        );
        let shape = json!({"awsvpcConfiguration": {"subnets": [""], "assignPublicIp": "ENABLED"}});
        let v = typed(
            parse("awsvpcConfiguration={subnets=s-1}").unwrap(),
            &shape,
            "x",
        )
        .unwrap();
        assert_eq!(v, json!({"awsvpcConfiguration": {"subnets": ["s-1"]}}));
        let shape = json!({"enable": true, "options": {"KeyName": ""}});
        let v = typed(parse("enable=TRUE,options={a=1}").unwrap(), &shape, "x").unwrap();
        assert_eq!(v, json!({"enable": true, "options": {"a": "1"}}));
    }
}
