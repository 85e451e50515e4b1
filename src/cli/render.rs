//! `--output text` and `--output table` of the ECS verbs, by the AWS CLI's rules so that
//! scripts that cut its text output and people who read its tables see the same here.
//!
//! Ref: awscli (v1) `awscli/text.py` (text: tab-separated scalars, one line per list item,
//! the member name upper-cased as the prefix of a nested list's lines) and
//! `awscli/formatter.py` `TableFormatter` + `awscli/table.py` `MultiTable` (table: one
//! section per object, titled with the operation or member name, scalar members as
//! columns sorted by name, nested members as indented sections).

use serde_json::Value;

/// A scalar as Python's `str()` prints it in the AWS CLI's text and table output.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// `--output text`.
pub fn text(v: &Value) -> String {
    let mut out = String::new();
    text_item(v, &mut out, None, None);
    out
}

fn text_item(v: &Value, out: &mut String, id: Option<&str>, scalar_keys: Option<&[String]>) {
    match v {
        Value::Object(m) => {
            let (scalars, nested): (Vec<String>, Vec<(&String, &Value)>) = match scalar_keys {
                // Members of a list's objects: every object gets every scalar column.
                Some(keys) => (
                    keys.iter()
                        .map(|k| m.get(k).map(scalar).unwrap_or_default())
                        .collect(),
                    {
                        let mut rest: Vec<(&String, &Value)> =
                            m.iter().filter(|(k, _)| !keys.contains(k)).collect();
                        rest.sort_by_key(|(k, _)| *k);
                        rest
                    },
                ),
                None => {
                    let mut sorted: Vec<(&String, &Value)> = m.iter().collect();
                    sorted.sort_by_key(|(k, _)| *k);
                    (
                        sorted
                            .iter()
                            .filter(|(_, v)| is_scalar(v))
                            .map(|(_, v)| scalar(v))
                            .collect(),
                        sorted.into_iter().filter(|(_, v)| !is_scalar(v)).collect(),
                    )
                }
            };
            if !scalars.is_empty() {
                let mut cols = Vec::with_capacity(scalars.len() + 1);
                if let Some(id) = id {
                    cols.push(id.to_uppercase());
                }
                cols.extend(scalars);
                out.push_str(&cols.join("\t"));
                out.push('\n');
            }
            for (k, v) in nested {
                text_item(v, out, Some(k), None);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                return;
            }
            if items.iter().any(Value::is_object) {
                let mut keys: Vec<String> = items
                    .iter()
                    .filter_map(Value::as_object)
                    .flat_map(|m| m.iter().filter(|(_, v)| is_scalar(v)).map(|(k, _)| k))
                    .cloned()
                    .collect();
                keys.sort();
                keys.dedup();
                for item in items {
                    text_item(item, out, id, Some(&keys));
                }
            } else if items.iter().any(Value::is_array) {
                let (scalars, nested): (Vec<&Value>, Vec<&Value>) =
                    items.iter().partition(|v| is_scalar(v));
                if !scalars.is_empty() {
                    scalar_list(&scalars, id, out);
                }
                for n in nested {
                    text_item(n, out, id, None);
                }
            } else {
                scalar_list(&items.iter().collect::<Vec<_>>(), id, out);
            }
        }
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar_list(items: &[&Value], id: Option<&str>, out: &mut String) {
    match id {
        Some(id) => {
            for v in items {
                out.push_str(&format!("{}\t{}\n", id.to_uppercase(), scalar(v)));
            }
        }
        None => {
            let cols: Vec<String> = items.iter().map(|v| scalar(v)).collect();
            out.push_str(&cols.join("\t"));
            out.push('\n');
        }
    }
}

/// One section of a table: a title, maybe a header row, rows, its indent.
#[derive(Debug, Default)]
struct Section {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    indent: usize,
    widths: Vec<usize>,
}

/// Display width as the AWS CLI counts it (East Asian wide characters take two columns;
/// everything else one).
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

impl Section {
    fn widen(&mut self, row: &[String]) {
        if self.widths.is_empty() {
            self.widths = row.iter().map(|c| width(c)).collect();
        } else {
            for (w, c) in self.widths.iter_mut().zip(row) {
                *w = (*w).max(width(c));
            }
        }
    }

    fn add_header(&mut self, h: Vec<String>) {
        self.widen(&h);
        self.headers = h;
    }

    fn add_row(&mut self, r: Vec<String>) {
        self.widen(&r);
        self.rows.push(r);
    }

    /// Column widths with `padding`, scaled to fill `max` as `Section.calculate_column_widths`.
    fn column_widths(&self, padding: usize, max: Option<usize>) -> Vec<usize> {
        let unscaled: Vec<usize> = self.widths.iter().map(|w| w + padding).collect();
        let Some(max) = max else { return unscaled };
        if unscaled.is_empty() {
            return unscaled;
        }
        let factor = max as f64 / unscaled.iter().sum::<usize>() as f64;
        // Python's round() is round-half-to-even.
        let mut scaled: Vec<i64> = unscaled
            .iter()
            .map(|w| (factor * *w as f64).round_ties_even() as i64)
            .collect();
        let mut off = scaled.iter().sum::<i64>() - max as i64;
        while off != 0 {
            let order: Vec<usize> = if off < 0 {
                (0..scaled.len()).rev().collect()
            } else {
                (0..scaled.len()).collect()
            };
            for i in order {
                if off > 0 {
                    scaled[i] -= 1;
                    off -= 1;
                } else {
                    scaled[i] += 1;
                    off += 1;
                }
                if off == 0 {
                    break;
                }
            }
        }
        scaled.into_iter().map(|w| w.max(0) as usize).collect()
    }

    fn total_width(&self) -> usize {
        let total: usize = self
            .column_widths(0, None)
            .iter()
            .map(|w| w + 4)
            .sum::<usize>()
            + 2
            + 2 * self.indent;
        total.max(width(&self.title) + 2 + 2 * self.indent)
    }
}

fn spaces(n: i64) -> String {
    " ".repeat(n.max(0) as usize)
}

/// `center_text` of awscli/table.py (negative counts are no spaces, as in Python).
fn center(text: &str, len: usize, left: &str, right: &str) -> String {
    let tl = width(text) as i64;
    let start = (len as i64 / 2) - (tl / 2) - 1;
    let so_far = width(left) as i64 + start + tl;
    let right_spaces = len as i64 - width(right) as i64 - so_far;
    format!(
        "{left}{}{text}{}{right}",
        spaces(start),
        spaces(right_spaces)
    )
}

/// `align_left` of awscli/table.py.
fn align_left(text: &str, len: usize, left: &str, right: &str) -> String {
    let tl = width(text) as i64;
    let computed = tl + 2 + width(left) as i64 + width(right) as i64;
    let padding = if len as i64 - computed >= 0 { 2 } else { 0 };
    let so_far = left.len() as i64 + padding + tl;
    format!(
        "{left}{}{text}{}{right}",
        spaces(padding),
        spaces(len as i64 - so_far - right.len() as i64)
    )
}

/// Builds the sections as the AWS CLI's `TableFormatter` does.
#[derive(Default)]
struct Builder {
    sections: Vec<Section>,
}

impl Builder {
    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.sections.push(Section::default());
        }
        self.sections.last_mut().expect("a section")
    }

    fn new_section(&mut self, title: &str, indent: usize) {
        self.sections.push(Section {
            title: title.to_string(),
            indent,
            ..Default::default()
        });
    }

    fn build(&mut self, title: Option<&str>, v: &Value, indent: usize) -> bool {
        let empty = match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(m) => m.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
        };
        if empty {
            return false;
        }
        if let Some(t) = title {
            self.new_section(t, indent);
        }
        match v {
            Value::Array(items) => {
                if items[0].is_object() {
                    self.list_sections(items, indent, title.unwrap_or_default());
                } else {
                    for item in items {
                        match item {
                            Value::Array(inner) if inner.iter().all(is_scalar) => {
                                self.current().add_row(inner.iter().map(scalar).collect())
                            }
                            s if is_scalar(s) => self.current().add_row(vec![scalar(s)]),
                            other => {
                                self.build(None, other, 0);
                            }
                        }
                    }
                }
            }
            Value::Object(m) => self.dict_section(m, indent),
            _ => {}
        }
        true
    }

    fn dict_section(&mut self, m: &serde_json::Map<String, Value>, indent: usize) {
        let mut headers: Vec<&String> = m
            .iter()
            .filter(|(_, v)| is_scalar(v))
            .map(|e| e.0)
            .collect();
        let mut more: Vec<&String> = m
            .iter()
            .filter(|(_, v)| !is_scalar(v))
            .map(|e| e.0)
            .collect();
        headers.sort();
        more.sort();
        if headers.len() == 1 {
            let h = headers[0];
            self.current().add_row(vec![h.clone(), scalar(&m[h])]);
        } else if !headers.is_empty() {
            self.current()
                .add_header(headers.iter().map(|h| h.to_string()).collect());
            self.current()
                .add_row(headers.iter().map(|h| scalar(&m[*h])).collect());
        }
        for k in more {
            self.build(Some(k), &m[k], indent + 1);
        }
    }

    fn list_sections(&mut self, items: &[Value], indent: usize, title: &str) {
        let mut headers: Vec<String> = Vec::new();
        let mut more: Vec<String> = Vec::new();
        for m in items.iter().filter_map(Value::as_object) {
            for (k, v) in m {
                if is_scalar(v) {
                    headers.push(k.clone());
                } else {
                    more.push(k.clone());
                }
            }
        }
        headers.sort();
        headers.dedup();
        more.sort();
        more.dedup();
        self.current().add_header(headers.clone());
        for (i, item) in items.iter().enumerate() {
            if i > 0 && !more.is_empty() {
                self.new_section(title, indent);
                self.current().add_header(headers.clone());
            }
            let m = item.as_object();
            let row = headers
                .iter()
                .map(|h| m.and_then(|m| m.get(h)).map(scalar).unwrap_or_default())
                .collect();
            self.current().add_row(row);
            if let Some(m) = m {
                for k in &more {
                    if let Some(v) = m.get(k) {
                        self.build(Some(k), v, indent + 1);
                    }
                }
            }
        }
    }
}

/// `--output table`, titled `title` (the operation's name, as the AWS CLI titles it), for
/// a terminal `terminal_width` columns wide (80 when stdout is not a terminal).
pub fn table(title: &str, v: &Value, terminal_width: usize) -> String {
    let mut b = Builder::default();
    if !b.build(Some(title), v, 0) {
        return String::new();
    }
    let mut sections = b.sections;
    let max_width = |s: &[Section]| s.iter().map(Section::total_width).max().unwrap_or(0);
    let mut max = max_width(&sections);
    if max > terminal_width {
        // Too wide: one-row sections become name/value rows.
        for s in sections.iter_mut() {
            if s.rows.len() == 1 && !s.headers.is_empty() {
                let mut n = Section {
                    title: std::mem::take(&mut s.title),
                    indent: s.indent,
                    ..Default::default()
                };
                for (h, e) in s.headers.iter().zip(&s.rows[0]) {
                    n.add_row(vec![h.clone(), e.clone()]);
                }
                *s = n;
            }
        }
        max = max_width(&sections);
    }
    let mut out = format!("{}\n", "-".repeat(max));
    for s in &sections {
        let pipes = "|".repeat(s.indent);
        let mut line = |text: String| {
            out.push_str(&pipes);
            out.push_str(&text);
            out.push_str(&pipes);
            out.push('\n');
        };
        let w = max - 2 * s.indent;
        if !s.title.is_empty() {
            line(center(&s.title, w, "|", "|"));
            if s.headers.is_empty() && s.rows.is_empty() {
                line(format!("+{}+", "-".repeat(w.saturating_sub(2))));
            }
        }
        let widths = s.column_widths(4, Some(w));
        let line_break = |widths: &[usize]| {
            let mut t = String::new();
            for (i, wd) in widths.iter().enumerate() {
                if i == 0 {
                    t.push_str(&format!("+{}+", "-".repeat(wd.saturating_sub(2))));
                } else {
                    t.push_str(&format!("{}+", "-".repeat(wd.saturating_sub(1))));
                }
            }
            t
        };
        if !s.headers.is_empty() {
            line(line_break(&widths));
            let mut t = String::new();
            for (i, (wd, h)) in widths.iter().zip(&s.headers).enumerate() {
                t.push_str(&center(h, *wd, if i == 0 { "|" } else { "" }, "|"));
            }
            line(t);
        }
        if !s.rows.is_empty() && !widths.is_empty() {
            line(line_break(&widths));
            for row in &s.rows {
                let mut t = String::new();
                for (i, (wd, e)) in widths.iter().zip(row).enumerate() {
                    t.push_str(&align_left(e, *wd, if i == 0 { "|" } else { "" }, "|"));
                }
                line(t);
            }
            line(line_break(&widths));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The AWS CLI's own rendering of `v` (awscli in the test venv), for comparison.
    fn awscli(kind: &str, title: &str, v: &Value) -> String {
        let script = format!(
            "import json,sys,io\n\
             from awscli import text\n\
             from awscli.formatter import TableFormatter\n\
             class A: color='off'; query=None\n\
             v=json.loads(sys.stdin.read())\n\
             out=io.StringIO()\n\
             if '{kind}'=='text':\n    text.format_text(v,out)\n\
             else:\n    f=TableFormatter(A()); f.table._terminal_width=80; f('{title}',v,out)\n\
             sys.stdout.write(out.getvalue())\n"
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with awscli (scripts/test installs it)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(v.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "awscli formatter failed");
        String::from_utf8(out.stdout).unwrap()
    }

    fn samples() -> Vec<Value> {
        vec![
            json!({"taskArns": ["arn:aws:ecs:us-east-1:000000000000:task/default/abc", "arn:x/def"]}),
            json!({"clusters": [
                {"clusterArn": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                 "clusterName": "default", "status": "ACTIVE", "runningTasksCount": 1,
                 "pendingTasksCount": 0, "tags": [], "settings": [{"name": "containerInsights", "value": "disabled"}]},
                {"clusterArn": "arn:aws:ecs:us-east-1:000000000000:cluster/dev",
                 "clusterName": "dev", "status": "INACTIVE", "runningTasksCount": 0,
                 "pendingTasksCount": 0, "statistics": []}],
              "failures": [{"arn": "arn:missing", "reason": "MISSING"}]}),
            json!({"tasks": [{"taskArn": "t1", "lastStatus": "RUNNING", "enableExecuteCommand": false,
                "cpu": "256", "containers": [{"name": "web", "exitCode": null, "networkInterfaces": [{"privateIpv4Address": "10.0.0.2"}]},
                {"name": "side", "exitCode": 0}], "attributes": [{"name": "a", "value": "b"}],
                "overrides": {"containerOverrides": [{"name": "web"}]}}], "failures": []}),
            json!({"service": {"serviceName": "web", "desiredCount": 2, "deployments": [{"id": "d1", "status": "PRIMARY", "runningCount": 2}], "events": []}}),
            json!([["a", "b"], "c", ["d"]]),
            json!({"protectedTasks": [{"taskArn": "x", "protectionEnabled": true, "expirationDate": "2024-01-01T00:00:00Z"}]}),
        ]
    }

    #[test]
    fn text_output_is_the_aws_clis() {
        for v in samples() {
            assert_eq!(text(&v), awscli("text", "X", &v), "for {v}");
        }
        assert_eq!(text(&json!("one")), "one\n");
        assert_eq!(text(&json!(null)), "None\n");
    }

    #[test]
    fn table_output_is_the_aws_clis() {
        // Not the mixed list: the AWS CLI's table fails on rows of unequal length.
        for v in samples().into_iter().filter(|v| !v.is_array()) {
            assert_eq!(
                table("DescribeThings", &v, 80),
                awscli("table", "DescribeThings", &v),
                "for {v}"
            );
        }
        // Wider than the terminal: one-row sections turn into name/value rows.
        let wide = json!({"service": {"serviceArn": "arn:aws:ecs:us-east-1:000000000000:service/default/a-rather-long-service-name", "serviceName": "a-rather-long-service-name", "status": "ACTIVE"}});
        assert_eq!(
            table("CreateService", &wide, 80),
            awscli("table", "CreateService", &wide)
        );
    }
}
