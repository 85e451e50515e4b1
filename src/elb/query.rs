//! awsQuery's encoding as ELBv2 uses it: a request is a form (`Action`, `Version` and the
//! members, lists as `<Member>.member.<N>`, structures as `<Member>.<Field>`), an answer is
//! `<OpResponse xmlns=…><OpResult>…</OpResult><ResponseMetadata><RequestId/>…`, lists as
//! `<Member><member>…</member></Member>`. Ref: botocore `serialize.py` (`QuerySerializer`)
//! and `parsers.py` (`QueryParser`), the elbv2 model's `resultWrapper`s.

use super::error::{ElbError, ElbResult};
use std::collections::BTreeMap;

/// The XML namespace of ELBv2's answers (the model's `metadata.xmlNamespace`).
pub const XMLNS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// A request's members by their flattened names (`Names.member.1`), or a structure's
/// members with its prefix taken off.
#[derive(Debug, Clone, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// The members of a form body (`Action` and `Version` are left in; nobody asks them).
    pub fn from_form(body: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A request's members given by name (the core's own callers: the service scheduler).
    pub fn of(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required member.
    pub fn required(&self, name: &str) -> ElbResult<&str> {
        self.str(name).ok_or_else(|| {
            ElbError::Validation(format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(name)))
        })
    }

    /// An integer member, within `min..=max` (the model's or the API reference's bounds).
    pub fn int(&self, name: &str, min: i64, max: i64) -> ElbResult<Option<i64>> {
        let Some(s) = self.str(name) else {
            return Ok(None);
        };
        let n: i64 = s.trim().parse().map_err(|_| {
            ElbError::Validation(format!(
                "Value '{s}' at '{}' is not an integer",
                lower_first(name)
            ))
        })?;
        if n < min || n > max {
            return Err(ElbError::Validation(format!(
                "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value {}",
                lower_first(name),
                if n < min {
                    format!("greater than or equal to {min}")
                } else {
                    format!("less than or equal to {max}")
                }
            )));
        }
        Ok(Some(n))
    }

    pub fn bool(&self, name: &str) -> ElbResult<Option<bool>> {
        match self.str(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(s) => Err(ElbError::Validation(format!(
                "Value '{s}' at '{}' is not a boolean",
                lower_first(name)
            ))),
        }
    }

    /// A list of strings: `<name>.member.1`, `.2`, … in order (the members up to the first
    /// gap, as botocore numbers them from 1 without gaps).
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.str(&format!("{name}.member.{i}")).map(str::to_string))
            .collect()
    }

    /// A list of structures: each `<name>.member.<N>.` prefix's members.
    pub fn structs(&self, name: &str) -> Vec<Params> {
        let mut out = Vec::new();
        for i in 1.. {
            let s = self.sub(&format!("{name}.member.{i}"));
            if s.0.is_empty() {
                break;
            }
            out.push(s);
        }
        out
    }

    /// A structure member's own members (`<name>.<Field>`), None when none is given.
    pub fn sub(&self, name: &str) -> Params {
        let prefix = format!("{name}.");
        Params(
            self.0
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k[prefix.len()..].to_string(), v.clone()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `Names` → `names`: how AWS's validation messages name a member.
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// An XML answer being written.
#[derive(Default)]
pub struct Xml(String);

impl Xml {
    pub fn new() -> Xml {
        Xml::default()
    }

    /// `<tag>value</tag>`, escaped.
    pub fn leaf(&mut self, tag: &str, value: impl std::fmt::Display) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
        escape_into(&mut self.0, &value.to_string());
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// `<tag>value</tag>` when there is a value.
    pub fn opt(&mut self, tag: &str, value: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
        self
    }

    /// `<tag>` … `</tag>` around what `f` writes.
    pub fn node(&mut self, tag: &str, f: impl FnOnce(&mut Xml)) -> &mut Self {
        self.0.push_str(&format!("<{tag}>"));
        f(self);
        self.0.push_str(&format!("</{tag}>"));
        self
    }

    /// `<tag><member>…</member>…</tag>`: a list, each item written by `f`.
    pub fn list<T>(
        &mut self,
        tag: &str,
        items: &[T],
        mut f: impl FnMut(&mut Xml, &T),
    ) -> &mut Self {
        self.node(tag, |x| {
            for item in items {
                x.node("member", |x| f(x, item));
            }
        })
    }

    /// A list of strings.
    pub fn strings(&mut self, tag: &str, items: &[String]) -> &mut Self {
        self.list(tag, items, |x, s| {
            escape_into(&mut x.0, s);
        })
    }
}

/// The whole answer of operation `op`: its result (what `result` wrote) wrapped as
/// botocore's `QueryParser` reads it.
pub fn response(op: &str, result: Xml, request_id: &str) -> String {
    let mut rid = String::new();
    escape_into(&mut rid, request_id);
    format!(
        "<{op}Response xmlns=\"{XMLNS}\"><{op}Result>{}</{op}Result>\
         <ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{op}Response>",
        result.0
    )
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_structures_are_read_as_botocore_writes_them() {
        let p = Params::from_form(
            b"Action=CreateListener&Version=2015-12-01&Names.member.1=a&Names.member.2=b%20c\
              &Names.member.4=gap&DefaultActions.member.1.Type=forward\
              &DefaultActions.member.1.TargetGroupArn=arn%3A1&Matcher.HttpCode=200",
        );
        assert_eq!(p.list("Names"), ["a", "b c"]);
        let acts = p.structs("DefaultActions");
        assert_eq!(acts.len(), 1);
        assert_eq!(acts[0].str("Type"), Some("forward"));
        assert_eq!(acts[0].str("TargetGroupArn"), Some("arn:1"));
        assert_eq!(p.sub("Matcher").str("HttpCode"), Some("200"));
        assert!(p.sub("Nothing").is_empty());
        assert!(p.int("Port", 1, 65535).unwrap().is_none());
        let p = Params::of(&[("Port", "0")]);
        assert!(matches!(
            p.int("Port", 1, 65535),
            Err(ElbError::Validation(_))
        ));
    }

    #[test]
    fn answers_are_wrapped_and_escaped() {
        let mut x = Xml::new();
        x.strings("Names", &["a&b".into()]).leaf("Port", 80);
        assert_eq!(
            response("DescribeThings", x, "r1"),
            format!(
                "<DescribeThingsResponse xmlns=\"{XMLNS}\"><DescribeThingsResult>\
                 <Names><member>a&amp;b</member></Names><Port>80</Port></DescribeThingsResult>\
                 <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata>\
                 </DescribeThingsResponse>"
            )
        );
    }
}
