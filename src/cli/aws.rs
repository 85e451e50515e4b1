//! The AWS CLI's conventions for the ECS verbs: options named after the operation's input
//! members (from botocore's model, [`super::model`]), `--cli-input-json` (inline or
//! `file://`) merged under the options, `--generate-cli-skeleton`, shorthand or JSON for
//! structure options, `file://` parameter values, the paginators' `--max-items`,
//! `--page-size`, `--starting-token`, and `--output json|text|table` with `--query`.
//!
//! [`Generic`] is a verb built from the model alone: its options are the operation's
//! members, its request is decoded into the operation's typed request and handed to the
//! core's table (`crate::ecs::operations`), the one the HTTP API serves, so a verb cannot
//! drift from the API.

use super::{GlobalOpts, model, render, shorthand};
use crate::ecs::operations::{self as core_ops, Caller, Operation};
use crate::taskdef::finding::JsonPath;
use anyhow::Context;
use clap::{ArgAction, ArgMatches, Args, FromArgMatches, ValueEnum};
use serde_json::{Map, Value, json};
use std::marker::PhantomData;
use std::process::ExitCode;

/// A command line that is wrong: exit status 2, as for clap's own errors (an unknown
/// option, a missing value).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(m: impl Into<String>) -> anyhow::Error {
    UsageError(m.into()).into()
}

/// `--output` of the ECS verbs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The response as JSON (4-space indent, as the AWS CLI prints it).
    #[default]
    Json,
    /// Tab-separated values, one line per list item (the AWS CLI's `text`).
    Text,
    /// Boxed tables, one section per object (the AWS CLI's `table`).
    Table,
}

/// `--output` and `--query`: how an ECS verb prints its response.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Output options")]
pub struct OutputOpts {
    /// How to print the response: `json`, `text` (tab-separated, for scripts) or `table`,
    /// as the AWS CLI prints them.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// A JMESPath expression applied to the response before it is printed (as the AWS
    /// CLI's --query), e.g. `tasks[].lastStatus`.
    #[arg(long, value_name = "JMESPATH")]
    pub query: Option<String>,
}

/// `--cli-input-json` and `--generate-cli-skeleton`: the request as one JSON document.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Request input")]
pub struct InputOpts {
    /// The whole request as JSON: inline, or `file://PATH` (`~` is $HOME, a relative path
    /// is from the working directory). Options given as well win over its members.
    #[arg(long, value_name = "JSON")]
    pub cli_input_json: Option<String>,
    /// Print a JSON skeleton of the request and exit; fill it in and pass it to
    /// --cli-input-json (`input`, the only kind here).
    #[arg(
        long,
        value_name = "KIND",
        num_args = 0..=1,
        default_missing_value = "input",
        value_parser = ["input"]
    )]
    pub generate_cli_skeleton: Option<String>,
}

/// A parameter value as the AWS CLI reads it: `file://PATH` is the file's text (`fileb://`
/// too), anything else itself. Ref: awscli `awscli/paramfile.py` (`file://`, `fileb://`;
/// `os.path.expanduser` on the path).
pub fn param_value(v: &str) -> anyhow::Result<String> {
    let path = v
        .strip_prefix("file://")
        .or_else(|| v.strip_prefix("fileb://"));
    match path {
        Some(p) => {
            let path = crate::taskdef::parse::expand_home(p);
            std::fs::read_to_string(&path).map_err(|e| {
                usage(format!(
                    "Error parsing parameter: Unable to load paramfile {v}: {e} ({})",
                    path.display()
                ))
            })
        }
        None => Ok(v.to_string()),
    }
}

/// A structure (or list) option: JSON, or the AWS CLI's shorthand typed by `shape`.
pub fn structured(text: &str, shape: &Value, option: &str) -> anyhow::Result<Value> {
    let text = param_value(text)?;
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return serde_json::from_str(t).map_err(|e| {
            usage(format!(
                "Error parsing parameter '{option}': Invalid JSON: {e}\nJSON received: {t}"
            ))
        });
    }
    let v = shorthand::parse(t)
        .map_err(|e| usage(format!("Error parsing parameter '{option}': {e}")))?;
    shorthand::typed(v, shape, option).map_err(|e| usage(format!("Error parsing parameter {e}")))
}

/// The value of member `m` from its option's arguments.
fn member_value(m: &model::Member, shape: &Value, args: &[String]) -> anyhow::Result<Value> {
    let option = format!("--{}", model::kebab(&m.name));
    let one = || args.last().map(String::as_str).unwrap_or_default();
    let element = shape.get(0).cloned().unwrap_or(Value::Null);
    Ok(match m.kind.as_str() {
        "integer" | "long" => {
            let v = param_value(one())?;
            json!(v.trim().parse::<i64>().map_err(|_| usage(format!(
                "Error parsing parameter '{option}': {v:?} is not an integer"
            )))?)
        }
        "double" | "float" => {
            let v = param_value(one())?;
            json!(v.trim().parse::<f64>().map_err(|_| usage(format!(
                "Error parsing parameter '{option}': {v:?} is not a number"
            )))?)
        }
        "structure" | "map" => structured(one(), shape, &option)?,
        "list" | "list-of-structure" => {
            // One JSON list, or one element per argument.
            if let [only] = args
                && param_value(only)?.trim_start().starts_with('[')
            {
                structured(only, shape, &option)?
            } else {
                let mut items = Vec::new();
                for a in args {
                    items.push(if m.kind == "list" {
                        let v = param_value(a)?;
                        shorthand::typed(Value::String(v), &element, &option).map_err(usage)?
                    } else {
                        structured(a, &element, &option)?
                    });
                }
                Value::Array(items)
            }
        }
        _ => Value::String(param_value(one())?),
    })
}

/// The request of operation `op`: `--cli-input-json`, then the options over it, checked for
/// members ECS does not have and for missing required ones as the AWS CLI checks them.
/// `None` when `--generate-cli-skeleton` printed the skeleton instead.
pub fn request(
    op: &str,
    options: Map<String, Value>,
    input: &InputOpts,
) -> anyhow::Result<Option<Value>> {
    request_of(model::operation(op), options, input)
}

/// [`request`] for operation `o` of any service's model.
pub fn request_of(
    o: &model::Operation,
    options: Map<String, Value>,
    input: &InputOpts,
) -> anyhow::Result<Option<Value>> {
    if input.generate_cli_skeleton.is_some() {
        println!("{}", o.skeleton);
        return Ok(None);
    }
    let mut req = match &input.cli_input_json {
        Some(text) => {
            let text = param_value(text)?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(usage("--cli-input-json: the request must be a JSON object")),
                Err(e) => {
                    return Err(usage(format!(
                        "Error parsing parameter 'cli-input-json': Invalid JSON received: {e}"
                    )));
                }
            }
        }
        None => Map::new(),
    };
    for (k, v) in options {
        req.insert(k, v);
    }
    let req = Value::Object(req);
    check_of(o, &req)?;
    Ok(Some(req))
}

/// Members operation `o` does not have, then required members missing, in botocore's
/// words. Ref: botocore `botocore/validate.py` (`Unknown parameter in …`, `Missing required
/// parameter in …`, all under `Parameter validation failed:`).
pub fn check_of(o: &model::Operation, req: &Value) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if let Value::Object(m) = req {
        let names: Vec<String> = o.members.iter().map(|m| m.name.clone()).collect();
        let shape = o.input_shape();
        for (k, v) in m {
            match shape.get(k) {
                Some(s) => unknown_members(o, v, s, &JsonPath::root().key(k), &mut problems),
                None => problems.push(crate::taskdef::unknown::message_with(
                    &JsonPath::root().key(k),
                    &names,
                )),
            }
        }
        for r in &o.required {
            if !m.contains_key(r) {
                problems.push(format!(
                    "Missing required parameter in input: \"{r}\" (--{})",
                    model::kebab(r)
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(usage(format!(
            "Parameter validation failed:\n{}",
            problems.join("\n")
        )))
    }
}

fn unknown_members(
    o: &model::Operation,
    v: &Value,
    shape: &Value,
    at: &JsonPath,
    out: &mut Vec<String>,
) {
    match (v, shape) {
        (Value::Object(m), Value::Object(s)) => {
            // A map shape's skeleton is `{"KeyName": <value>}`: any key goes.
            let map_value = (s.len() == 1).then(|| s.get("KeyName")).flatten();
            for (k, sub) in m {
                match map_value.or_else(|| s.get(k)) {
                    Some(ss) => unknown_members(o, sub, ss, &at.key(k), out),
                    None => {
                        let keys: Vec<&str> =
                            at.0.iter()
                                .filter_map(|s| match s {
                                    crate::taskdef::finding::Seg::Key(k) => Some(k.as_str()),
                                    _ => None,
                                })
                                .collect();
                        out.push(crate::taskdef::unknown::message_with(
                            &at.key(k),
                            &o.names_at(&keys),
                        ))
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(s)) if s.len() == 1 => {
            for (i, x) in items.iter().enumerate() {
                unknown_members(o, x, &s[0], &at.index(i), out);
            }
        }
        _ => {}
    }
}

/// Decodes a checked request into the core's request type `T`; a member ECS has that the
/// core does not take is refused by name rather than dropped.
pub fn decode<T: serde::de::DeserializeOwned>(op: &str, v: Value) -> anyhow::Result<T> {
    use crate::taskdef::unknown::{DecodeError, decode};
    decode(&v.to_string(), &JsonPath::root()).map_err(|e| match e {
        DecodeError::Malformed(m) => usage(format!("Parameter validation failed: {m}")),
        DecodeError::Unknown(_) => usage(format!(
            "{e}\n(ECS's {op} has these members; minifargate does not take them)"
        )),
    })
}

/// Applies `--query` and prints `v` as `--output` says; `op` titles a table.
pub fn print(op: &str, v: Value, out: &OutputOpts) -> anyhow::Result<()> {
    let v = match &out.query {
        Some(q) => query(q, &v)?,
        None => v,
    };
    let text = match out.output {
        // The AWS CLI prints nothing for an empty response (TagResource's `{}`).
        Output::Json if v == json!({}) => String::new(),
        Output::Json => json_text(&v)?,
        Output::Text => render::text(&v),
        Output::Table => render::table(op, &v, terminal_width()),
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("failed to write to standard output")
}

/// [`print`] for a typed response: its members in the order ECS prints them when the
/// output is plain JSON.
pub fn print_response<T: serde::Serialize>(
    op: &str,
    r: &T,
    out: &OutputOpts,
) -> anyhow::Result<()> {
    if out.output == Output::Json && out.query.is_none() {
        let text = json_text(r)?;
        print!("{text}");
        return Ok(());
    }
    print(op, serde_json::to_value(r)?, out)
}

/// JSON as the AWS CLI prints it: four-space indent, a newline at the end.
pub fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)
        .context("failed to encode the output as JSON")?;
    buf.push(b'\n');
    Ok(String::from_utf8(buf).expect("serde_json writes UTF-8"))
}

/// `--query`: a JMESPath expression over the response.
pub fn query(expr: &str, v: &Value) -> anyhow::Result<Value> {
    let e =
        jmespath::compile(expr).map_err(|e| usage(format!("Bad value for --query {expr}: {e}")))?;
    let r = e
        .search(v.clone())
        .map_err(|e| usage(format!("--query {expr}: {e}")))?;
    Ok(serde_json::to_value(&*r)?)
}

/// Columns of the terminal on stdout; 80 when it is not one (as the AWS CLI).
fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|w| w.ws_col as usize)
        .filter(|w| *w > 0)
        .unwrap_or(80)
}

/// A verb whose options are an ECS operation's input members (kebab-case, as the AWS CLI
/// names them), plus the request input and output options.
#[derive(Debug, Clone)]
pub struct Generic<O: Operation> {
    /// The members given as options, typed by the model.
    pub options: Map<String, Value>,
    pub input: InputOpts,
    pub output: OutputOpts,
    pub pages: PageOpts,
    _op: PhantomData<O>,
}

/// The AWS CLI's pagination options, in place of a paginated operation's `nextToken` and
/// `maxResults` (it gathers every page unless told otherwise).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Pagination")]
pub struct PageOpts {
    /// The most items to print; a `NextToken` to resume from is printed when there were
    /// more.
    #[arg(long, value_name = "N")]
    pub max_items: Option<usize>,
    /// How many items to ask for per call (the operation's `maxResults`).
    #[arg(long, value_name = "N")]
    pub page_size: Option<i64>,
    /// Resume where a `--max-items` output's `NextToken` left off.
    #[arg(long, value_name = "TOKEN")]
    pub starting_token: Option<String>,
}

/// The members a paginated operation takes from the pagination options instead.
fn hidden_members(o: &model::Operation) -> Vec<&str> {
    o.paginator
        .as_ref()
        .map(|p| {
            let mut v = vec![p.input_token.as_str()];
            v.extend(p.limit_key.as_deref());
            v
        })
        .unwrap_or_default()
}

fn help_of(m: &model::Member) -> String {
    let mut h = m.doc.clone();
    if !m.r#enum.is_empty() {
        h.push_str(&format!(" One of: {}.", m.r#enum.join(", ")));
    }
    if matches!(m.kind.as_str(), "structure" | "map" | "list-of-structure") {
        h.push_str(" JSON or shorthand (k=v,k2=v2).");
    }
    h
}

/// Adds operation `o`'s input members to `cmd` as options (kebab-case, with the AWS CLI's
/// renames of `service`), then the request input, pagination and output options: the
/// options of a verb named after an operation, for any service's model.
pub fn operation_args(
    mut cmd: clap::Command,
    service: &model::Service,
    o: &model::Operation,
    verb: &str,
) -> clap::Command {
    let hidden = hidden_members(o);
    for m in o
        .members
        .iter()
        .filter(|m| !hidden.contains(&m.name.as_str()))
    {
        let long = model::kebab(&m.name);
        let help = help_of(m);
        let arg = clap::Arg::new(m.name.clone()).long(long.clone()).help(help);
        cmd = match m.kind.as_str() {
            "boolean" => {
                let no = format!("no-{long}");
                let no_long = service.option_name(verb, &no);
                cmd.arg(arg.action(ArgAction::SetTrue).overrides_with(no.clone()))
                    .arg(
                        clap::Arg::new(no.clone())
                            .long(no_long)
                            .action(ArgAction::SetTrue)
                            .help(format!("Sets {} to false.", m.name))
                            .overrides_with(m.name.clone()),
                    )
            }
            "list" | "list-of-structure" => cmd.arg(
                arg.num_args(1..)
                    .action(ArgAction::Append)
                    .value_name(long.to_uppercase().replace('-', "_")),
            ),
            _ => cmd.arg(arg.value_name(long.to_uppercase().replace('-', "_"))),
        };
    }
    cmd = InputOpts::augment_args(cmd);
    if o.paginator.is_some() {
        cmd = PageOpts::augment_args(cmd);
    }
    OutputOpts::augment_args(cmd)
}

/// The input members given as options of operation `o`'s verb ([`operation_args`]),
/// typed by the model.
pub fn operation_options(
    o: &model::Operation,
    m: &ArgMatches,
) -> Result<Map<String, Value>, clap::Error> {
    let hidden = hidden_members(o);
    let mut options = Map::new();
    let shape = o.input_shape();
    for mem in o
        .members
        .iter()
        .filter(|x| !hidden.contains(&x.name.as_str()))
    {
        if mem.kind == "boolean" {
            if m.get_flag(&mem.name) {
                options.insert(mem.name.clone(), json!(true));
            } else if m.get_flag(&format!("no-{}", model::kebab(&mem.name))) {
                options.insert(mem.name.clone(), json!(false));
            }
            continue;
        }
        let Some(values) = m.get_many::<String>(&mem.name) else {
            continue;
        };
        let args: Vec<String> = values.cloned().collect();
        let sub = shape.get(&mem.name).cloned().unwrap_or(Value::Null);
        let v = member_value(mem, &sub, &args).map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
        })?;
        options.insert(mem.name.clone(), v);
    }
    Ok(options)
}

impl<O: Operation> Args for Generic<O> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let o = model::operation(O::OP.name());
        operation_args(cmd, &model::ECS, o, &model::kebab(O::OP.name()))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl<O: Operation> FromArgMatches for Generic<O> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let o = model::operation(O::OP.name());
        let options = operation_options(o, m)?;
        let pages = if o.paginator.is_some() {
            PageOpts::from_arg_matches(m)?
        } else {
            PageOpts::default()
        };
        Ok(Generic {
            options,
            input: InputOpts::from_arg_matches(m)?,
            output: OutputOpts::from_arg_matches(m)?,
            pages,
            _op: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl<O: Operation> Generic<O> {
    /// The request (`None` after printing the skeleton).
    pub fn request(&self) -> anyhow::Result<Option<Value>> {
        request(O::OP.name(), self.options.clone(), &self.input)
    }

    /// Builds the request, calls the operation (every page of a paginated one, as the AWS
    /// CLI does) and prints the response.
    pub fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let Some(req) = self.request()? else {
            return Ok(ExitCode::SUCCESS);
        };
        let call = |req: &Value| call::<O>(g, req);
        let resp = match &model::operation(O::OP.name()).paginator {
            Some(p) => paginate(p, req, &self.pages, call)?,
            None => call(&req)?,
        };
        print(O::OP.name(), resp, &self.output)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Calls operation `O` of the core's table for this host's own CLI: request `req` (checked
/// JSON) decoded into its typed request, the typed response as JSON.
pub fn call<O: Operation>(g: &GlobalOpts, req: &Value) -> anyhow::Result<Value> {
    let ecs = g.ecs();
    let cx = core_ops::Context {
        ecs: &ecs,
        caller: Caller::LocalCli,
    };
    let typed = O::decode(req.to_string().as_bytes())?;
    let resp = O::call(&cx, typed)?;
    serde_json::to_value(resp).context("failed to encode the response")
}

/// botocore's pagination token: base64 of `{"nextToken": …, "boto_truncate_amount": N}`.
/// Ref: botocore `botocore/paginate.py` (`TokenEncoder`, `TokenDecoder`, `_truncate_response`).
fn encode_token(token: Option<&Value>, truncate: usize) -> String {
    use base64::Engine;
    let mut m = Map::new();
    if let Some(t) = token {
        m.insert("nextToken".into(), t.clone());
    }
    if truncate > 0 {
        m.insert("boto_truncate_amount".into(), json!(truncate));
    }
    base64::engine::general_purpose::STANDARD.encode(Value::Object(m).to_string())
}

fn decode_token(s: &str) -> anyhow::Result<(Option<Value>, usize)> {
    use base64::Engine;
    let bad = || {
        usage(format!(
            "--starting-token {s:?} is not a NextToken this CLI printed"
        ))
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let skip = v["boto_truncate_amount"].as_u64().unwrap_or(0) as usize;
    Ok((v.get("nextToken").cloned(), skip))
}

/// Every page of a paginated call (from `--starting-token`), up to `--max-items`.
pub fn paginate(
    p: &model::Paginator,
    mut req: Value,
    opts: &PageOpts,
    call: impl Fn(&Value) -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    if let (Some(n), Some(limit)) = (opts.page_size, &p.limit_key) {
        req[limit] = json!(n);
    }
    let mut skip = 0;
    if let Some(t) = &opts.starting_token {
        let (token, s) = decode_token(t)?;
        if let Some(token) = token {
            req[&p.input_token] = token;
        }
        skip = s;
    }
    let mut first: Option<Value> = None;
    let mut items: Vec<Value> = Vec::new();
    let mut next_token = None;
    loop {
        let page_token = req.get(&p.input_token).cloned();
        let mut resp = call(&req)?;
        let mut got: Vec<Value> = match resp.get_mut(&p.result_key).map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        got.drain(..skip.min(got.len()));
        let already = skip;
        skip = 0;
        let next = resp
            .as_object_mut()
            .and_then(|m| m.remove(&p.output_token))
            .filter(|t| !t.is_null());
        if first.is_none() {
            first = Some(resp);
        }
        if let Some(max) = opts.max_items
            && items.len() + got.len() >= max
        {
            let take = max - items.len();
            let more_here = got.len() > take;
            items.extend(got.into_iter().take(take));
            if more_here {
                next_token = Some(encode_token(page_token.as_ref(), already + take));
            } else if let Some(n) = &next {
                next_token = Some(encode_token(Some(n), 0));
            }
            break;
        }
        items.extend(got);
        match next {
            Some(t) => req[&p.input_token] = t,
            None => break,
        }
    }
    let mut out = first.unwrap_or_else(|| json!({}));
    out[&p.result_key] = Value::Array(items);
    if let Some(t) = next_token {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_opts(max: Option<usize>, start: Option<String>) -> PageOpts {
        PageOpts {
            max_items: max,
            page_size: None,
            starting_token: start,
        }
    }

    /// A fake paginated operation over 0..7, three items a page (tokens are offsets).
    fn pages(req: &Value) -> anyhow::Result<Value> {
        let from: usize = req["nextToken"].as_str().map_or(0, |t| t.parse().unwrap());
        let items: Vec<usize> = (from..7).take(3).collect();
        let mut r = json!({ "things": items });
        if from + 3 < 7 {
            r["nextToken"] = json!((from + 3).to_string());
        }
        Ok(r)
    }

    fn paginator() -> model::Paginator {
        model::Paginator {
            input_token: "nextToken".into(),
            output_token: "nextToken".into(),
            limit_key: Some("maxResults".into()),
            result_key: "things".into(),
        }
    }

    #[test]
    fn every_page_and_max_items_with_a_token_to_resume() {
        let p = paginator();
        let all = paginate(&p, json!({}), &page_opts(None, None), pages).unwrap();
        assert_eq!(all, json!({"things": [0, 1, 2, 3, 4, 5, 6]}));
        // Cut inside a page, resume from the token.
        let part = paginate(&p, json!({}), &page_opts(Some(4), None), pages).unwrap();
        assert_eq!(part["things"], json!([0, 1, 2, 3]));
        let token = part["NextToken"].as_str().unwrap().to_string();
        let rest = paginate(&p, json!({}), &page_opts(None, Some(token)), pages).unwrap();
        assert_eq!(rest, json!({"things": [4, 5, 6]}));
        // Cut on a page boundary.
        let part = paginate(&p, json!({}), &page_opts(Some(3), None), pages).unwrap();
        let token = part["NextToken"].as_str().unwrap().to_string();
        let rest = paginate(&p, json!({}), &page_opts(Some(2), Some(token)), pages).unwrap();
        assert_eq!(rest["things"], json!([3, 4]));
        assert!(decode_token("not a token!").is_err());
    }

    #[test]
    fn unknown_and_missing_members_in_botocores_words() {
        let check = |op: &str, req: &Value| check_of(model::operation(op), req);
        let e = check(
            "CreateService",
            &json!({"servicName": "web", "deploymentConfiguration": {"maximumPercnt": 1}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("Parameter validation failed:\n"), "{e}");
        assert!(
            e.contains(
                "Unknown parameter in input: \"servicName\", must be one of: cluster, serviceName,"
            ),
            "{e}"
        );
        assert!(e.contains("Did you mean \"serviceName\"?"), "{e}");
        assert!(
            e.contains("Unknown parameter in deploymentConfiguration: \"maximumPercnt\""),
            "{e}"
        );
        assert!(
            e.contains("Missing required parameter in input: \"serviceName\" (--service-name)"),
            "{e}"
        );
        // Maps take any key.
        check(
            "TagResource",
            &json!({"resourceArn": "a", "tags": [{"key": "k", "value": "v"}]}),
        )
        .unwrap();
    }

    #[test]
    fn query_and_empty_responses() {
        let v = json!({"tasks": [{"lastStatus": "RUNNING"}, {"lastStatus": "STOPPED"}]});
        assert_eq!(
            query("tasks[].lastStatus", &v).unwrap(),
            json!(["RUNNING", "STOPPED"])
        );
        let e = query("tasks[", &v).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert_eq!(
            json_text(&json!({"a": [1]})).unwrap(),
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
    }

    #[test]
    fn every_ecs_operation_is_in_the_clis_model() {
        // A Generic verb takes its options from the model the CLI carries: every ECS row
        // of the core's table is one of its operations (model::operation panics if not).
        use crate::ecs::operations::{Op, Service};
        for op in Op::of(Service::Ecs) {
            model::operation(op.name());
        }
    }
}
