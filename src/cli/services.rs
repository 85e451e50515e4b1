//! The `elbv2` and `servicediscovery` verb groups: `minifargate elbv2 create-target-group
//! …` is `aws elbv2 create-target-group …`, each verb an operation serve answers, its
//! options the operation's input members, from the service's model (`super::model`), with
//! the ECS verbs' conventions (`super::aws`: `--cli-input-json`, shorthand, `file://`,
//! pagination, `--output`, `--query`).
//!
//! A verb calls the service's core in this process, over the store, as the ECS verbs do:
//! for ELBv2 the request goes as awsQuery's form (`crate::elb::query::Params`) and the XML
//! answer is read back by the output shape (`query_form`, `xml_answer`), so a verb runs
//! exactly what the HTTP API runs. A serve on this box reads the store again within a
//! second (`crate::api`'s `follow_local_writes`). A store that is a cluster's replica
//! (`serve --cluster`) is refused: its load balancers and Cloud Map are the cluster's.

use super::aws::{self, InputOpts, OutputOpts, PageOpts};
use super::{GlobalOpts, model};
use clap::{Args, FromArgMatches};
use serde_json::{Map, Value, json};
use std::process::ExitCode;

/// A verb of a service's group and its options, parsed when the group runs (building the
/// group's verbs costs the other verbs nothing).
#[derive(Debug, Clone, Args)]
pub struct VerbArgs {
    /// The verb (the operation in kebab-case, as the AWS CLI names it) and its options;
    /// `--help` after the group or a verb lists them.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "VERB [OPTIONS]"
    )]
    pub args: Vec<String>,
}

/// An error a service's core answered, as the AWS CLI prints it.
/// Ref: botocore `botocore/exceptions.py` (`ClientError.MSG_TEMPLATE`).
#[derive(Debug, thiserror::Error)]
#[error("An error occurred ({code}) when calling the {op} operation: {message}")]
pub struct ServiceError {
    pub code: String,
    pub op: String,
    pub message: String,
}

/// The group's command: one subcommand per operation of `service`'s model, with the
/// operation's first sentence and its members as options.
pub fn group_command(service: &'static model::Service) -> clap::Command {
    let mut cmd = clap::Command::new(service.name)
        .bin_name(format!("minifargate {}", service.name))
        .about(format!(
            "The AWS CLI's `aws {}` verbs for the operations serve answers.",
            service.name
        ))
        .subcommand_required(true)
        .arg_required_else_help(true);
    for op in service.operations() {
        let o = service.operation(op);
        let verb = model::kebab(op);
        // The options' groups set an about of their own: the verb's goes on last.
        let sub = aws::operation_args(clap::Command::new(verb.clone()), service, o, &verb)
            .about(o.doc.clone())
            .long_about(None)
            .after_help(format!(
                "As `aws {} {verb}` ({op}); errors exit 1, a wrong command line 2.",
                service.name
            ));
        cmd = cmd.subcommand(sub);
    }
    cmd
}

/// Runs `minifargate <service> VERB [OPTIONS]`.
pub fn run(
    g: &GlobalOpts,
    service: &'static model::Service,
    a: &VerbArgs,
) -> anyhow::Result<ExitCode> {
    let argv = std::iter::once(service.name.to_string()).chain(a.args.iter().cloned());
    let m = group_command(service)
        .try_get_matches_from(argv)
        .unwrap_or_else(|e| e.exit());
    let (verb, m) = m.subcommand().expect("a verb is required");
    let op = service
        .operations()
        .find(|op| model::kebab(op) == verb)
        .expect("clap accepted a verb of the model");
    let o = service.operation(op);
    let options = aws::operation_options(o, m).unwrap_or_else(|e| e.exit());
    let input = InputOpts::from_arg_matches(m).unwrap_or_else(|e| e.exit());
    let output = OutputOpts::from_arg_matches(m).unwrap_or_else(|e| e.exit());
    let pages = match &o.paginator {
        Some(_) => PageOpts::from_arg_matches(m).unwrap_or_else(|e| e.exit()),
        None => PageOpts::default(),
    };
    let Some(req) = aws::request_of(o, options, &input)? else {
        return Ok(ExitCode::SUCCESS);
    };
    refuse_in_cluster_mode(g, service, op)?;
    let core = Core::open(g, service)?;
    let call = |req: &Value| core.call(op, o, req);
    let resp = match &o.paginator {
        Some(p) => aws::paginate(p, req, &pages, call)?,
        None => call(&req)?,
    };
    aws::print(op, resp, &output)?;
    Ok(ExitCode::SUCCESS)
}

/// A store that is a cluster's replica (`serve --cluster` ran on it) is not where the
/// cluster's load balancers and Cloud Map are changed: refused, with where they are.
fn refuse_in_cluster_mode(
    g: &GlobalOpts,
    service: &model::Service,
    op: &str,
) -> anyhow::Result<()> {
    let Some(endpoints) = crate::cluster::replica::marked(&g.root) else {
        return Ok(());
    };
    anyhow::bail!(
        "{op}: the state under {} is a copy of the cluster's (serve --cluster, etcd {endpoints}): \
         its {} resources are the cluster's, changed and read through a serve of the cluster \
         (`aws {} --endpoint-url <serve's URL> {}`), not by this box's CLI (docs/cli.md \
         \"The elbv2 and servicediscovery verbs\")",
        g.root.display(),
        service.name,
        service.name,
        model::kebab(op)
    )
}

/// The core of a service, opened once for every page of a call.
enum Core {
    /// The load balancers, and the run root where serve publishes its targets' health.
    Elb(Box<crate::elb::Elb>, std::path::PathBuf),
    CloudMap(Box<crate::servicediscovery::CloudMap>),
}

impl Core {
    fn open(g: &GlobalOpts, service: &model::Service) -> anyhow::Result<Core> {
        use anyhow::Context;
        Ok(match service.name {
            "elbv2" => Core::Elb(
                Box::new(
                    crate::elb::Elb::open(g.root.clone())
                        .context("failed to load the load balancers (Elastic Load Balancing v2)")?,
                ),
                g.run_root.clone(),
            ),
            _ => Core::CloudMap(Box::new(
                crate::servicediscovery::CloudMap::open(g.root.clone())
                    .context("failed to load the Cloud Map resources (servicediscovery)")?,
            )),
        })
    }

    /// Operation `op` (`o` in the model) with the checked request `req`: the response as
    /// the AWS CLI has it before printing.
    fn call(&self, op: &str, o: &model::Operation, req: &Value) -> anyhow::Result<Value> {
        match self {
            Core::Elb(elb, run_root) => {
                // The targets' health is checked by serve: answered from what it
                // publishes (none when no serve runs: the targets are `initial`).
                if op == "DescribeTargetHealth" {
                    elb.take_health(&crate::elb::health::published_in_file(run_root));
                }
                let body = query_form(op, req, &o.input_shape());
                let params = crate::elb::query::Params::from_form(&body);
                let xml = crate::elb::ops::call(elb, op, &params).map_err(|e| ServiceError {
                    code: e.code().to_string(),
                    op: op.to_string(),
                    message: e.message().to_string(),
                })?;
                let text = crate::elb::query::response(op, xml, "minifargate-cli");
                let types = o.output.clone().unwrap_or_else(|| json!({}));
                xml_answer(op, &text, &types)
            }
            Core::CloudMap(cm) => {
                crate::servicediscovery::ops::call(cm, op, req.to_string().as_bytes()).map_err(
                    |e| {
                        let body = e.body();
                        ServiceError {
                            code: e.name().to_string(),
                            op: op.to_string(),
                            message: body["Message"].as_str().unwrap_or_default().to_string(),
                        }
                        .into()
                    },
                )
            }
        }
    }
}

/// awsQuery's form of request `req` of operation `op`: `Action`, `Version` and the
/// members, a structure's as `<Member>.<Field>`, a list's as `<Member>.member.<N>` (an
/// empty list as `<Member>=`), a map's as `<Member>.entry.<N>.key`/`.value`, booleans
/// `true`/`false`. `shape` is the input's skeleton (a map's is `{"KeyName": …}`).
/// Ref: botocore `botocore/serialize.py` (`QuerySerializer`).
pub fn query_form(op: &str, req: &Value, shape: &Value) -> Vec<u8> {
    fn add(prefix: &str, v: &Value, shape: &Value, out: &mut Vec<(String, String)>) {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(m) => {
                let map_value = match shape {
                    Value::Object(s) if s.len() == 1 => s.get("KeyName"),
                    _ => None,
                };
                match map_value {
                    Some(vs) => {
                        for (i, (k, x)) in m.iter().enumerate() {
                            let entry = key(&format!("entry.{}", i + 1));
                            out.push((format!("{entry}.key"), k.clone()));
                            add(&format!("{entry}.value"), x, vs, out);
                        }
                    }
                    None => {
                        for (k, x) in m {
                            add(&key(k), x, shape.get(k).unwrap_or(&Value::Null), out);
                        }
                    }
                }
            }
            Value::Array(items) => {
                if items.is_empty() {
                    out.push((prefix.to_string(), String::new()));
                }
                let element = shape.get(0).unwrap_or(&Value::Null);
                for (i, x) in items.iter().enumerate() {
                    add(&key(&format!("member.{}", i + 1)), x, element, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            Value::Bool(b) => out.push((prefix.to_string(), b.to_string())),
            Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
            Value::Null => {}
        }
    }
    let mut pairs = vec![
        ("Action".to_string(), op.to_string()),
        (
            "Version".to_string(),
            crate::api::protocol::ELB_VERSION.to_string(),
        ),
    ];
    add("", req, shape, &mut pairs);
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// An awsQuery answer of operation `op` as the AWS CLI has it: `<OpResult>`'s members
/// read by `types` (the model's output types: `scripts/cli-model.py`), lists from their
/// `<member>` items, maps from `<entry>`'s `key`/`value`, integers, numbers and booleans
/// typed, timestamps as their text (the AWS CLI v1 prints them so), members the shape
/// does not have left out. Ref: botocore `botocore/parsers.py` (`QueryParser`).
pub fn xml_answer(op: &str, xml: &str, types: &Value) -> anyhow::Result<Value> {
    use aws_smithy_xml::decode::{Document, ScopedDecoder, XmlDecodeError, try_data};
    type R = Result<Value, XmlDecodeError>;
    fn value(el: &mut ScopedDecoder, t: &Value) -> R {
        Ok(match t {
            Value::Array(item) => {
                let item = item.first().unwrap_or(&Value::Null);
                let mut out = Vec::new();
                while let Some(mut c) = el.next_tag() {
                    if c.start_el().local() == "member" {
                        out.push(value(&mut c, item)?);
                    }
                }
                Value::Array(out)
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("__map") => {
                let mut out = Map::new();
                while let Some(mut entry) = el.next_tag() {
                    let (mut k, mut v) = (None, Value::Null);
                    while let Some(mut c) = entry.next_tag() {
                        match c.start_el().local() {
                            "key" => k = Some(try_data(&mut c)?.into_owned()),
                            "value" => v = value(&mut c, &m["__map"])?,
                            _ => {}
                        }
                    }
                    if let Some(k) = k {
                        out.insert(k, v);
                    }
                }
                Value::Object(out)
            }
            Value::Object(members) => {
                let mut out = Map::new();
                while let Some(mut c) = el.next_tag() {
                    let name = c.start_el().local().to_string();
                    if let Some(ct) = members.get(&name) {
                        out.insert(name, value(&mut c, ct)?);
                    }
                }
                Value::Object(out)
            }
            Value::String(kind) => {
                let text = try_data(el)?;
                let bad = |what: &str| XmlDecodeError::custom(format!("{text:?} is not {what}"));
                match kind.as_str() {
                    "i" => json!(text.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
                    "f" => json!(text.trim().parse::<f64>().map_err(|_| bad("a number"))?),
                    "b" => json!(text.trim() == "true"),
                    _ => Value::String(text.into_owned()),
                }
            }
            _ => Value::Null,
        })
    }
    let read = || -> R {
        let mut doc = Document::new(xml);
        let mut root = doc.root_element()?;
        let result = format!("{op}Result");
        while let Some(mut c) = root.next_tag() {
            if c.start_el().local() == result {
                return value(&mut c, types);
            }
        }
        Ok(json!({}))
    };
    read().map_err(|e| anyhow::anyhow!("{op}: the answer does not read as its shape: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(op: &str, req: Value) -> Vec<(String, String)> {
        let o = model::ELBV2.operation(op);
        let body = query_form(op, &req, &o.input_shape());
        form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn requests_are_awsquerys_forms_as_botocore_writes_them() {
        let f = form(
            "CreateListener",
            json!({
                "LoadBalancerArn": "arn:lb",
                "Port": 80,
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": "arn:tg",
                    "AuthenticateOidcConfig": {"AuthenticationRequestExtraParams": {"a": "b"}}}],
                "Tags": []
            }),
        );
        let want: Vec<(String, String)> = [
            ("Action", "CreateListener"),
            ("Version", "2015-12-01"),
            (
                "DefaultActions.member.1.AuthenticateOidcConfig.AuthenticationRequestExtraParams.entry.1.key",
                "a",
            ),
            (
                "DefaultActions.member.1.AuthenticateOidcConfig.AuthenticationRequestExtraParams.entry.1.value",
                "b",
            ),
            ("DefaultActions.member.1.TargetGroupArn", "arn:tg"),
            ("DefaultActions.member.1.Type", "forward"),
            ("LoadBalancerArn", "arn:lb"),
            ("Port", "80"),
            ("Tags", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(f, want);
        let f = form(
            "ModifyTargetGroup",
            json!({"TargetGroupArn": "t", "HealthCheckEnabled": false}),
        );
        assert!(
            f.contains(&("HealthCheckEnabled".into(), "false".into())),
            "{f:?}"
        );
    }

    #[test]
    fn answers_are_read_by_their_output_shape() {
        let types = model::ELBV2
            .operation("DescribeTargetGroups")
            .output
            .clone()
            .unwrap();
        let xml = "<DescribeTargetGroupsResponse xmlns=\"x\"><DescribeTargetGroupsResult>\
            <TargetGroups><member><TargetGroupName>web</TargetGroupName><Port>80</Port>\
            <HealthCheckEnabled>true</HealthCheckEnabled><LoadBalancerArns/>\
            <Matcher><HttpCode>200</HttpCode></Matcher><Unknown>x</Unknown></member></TargetGroups>\
            <NextMarker>m&amp;1</NextMarker></DescribeTargetGroupsResult>\
            <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeTargetGroupsResponse>";
        let v = xml_answer("DescribeTargetGroups", xml, &types).unwrap();
        assert_eq!(
            v,
            json!({"TargetGroups": [{"TargetGroupName": "web", "Port": 80,
                "HealthCheckEnabled": true, "LoadBalancerArns": [],
                "Matcher": {"HttpCode": "200"}}], "NextMarker": "m&1"})
        );
        let types = model::ELBV2
            .operation("DeleteLoadBalancer")
            .output
            .clone()
            .unwrap();
        let xml =
            crate::elb::query::response("DeleteLoadBalancer", crate::elb::query::Xml::new(), "r");
        assert_eq!(
            xml_answer("DeleteLoadBalancer", &xml, &types).unwrap(),
            json!({})
        );
    }

    #[test]
    fn every_verb_has_its_operations_first_sentence_and_members() {
        for service in [&model::ELBV2, &model::SERVICEDISCOVERY] {
            let mut cmd = group_command(service);
            cmd.build();
            let verbs: Vec<_> = cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            assert_eq!(verbs.len(), service.operations().count());
            for sub in verbs {
                assert!(
                    sub.get_about().is_some_and(|a| !a.to_string().is_empty()),
                    "{}",
                    sub.get_name()
                );
            }
        }
        let mut cmd = group_command(&model::ELBV2);
        let help = cmd
            .find_subcommand_mut("create-target-group")
            .unwrap()
            .render_help()
            .to_string();
        for opt in [
            "--name",
            "--health-check-path",
            "--target-type",
            "--cli-input-json",
            "--query",
        ] {
            assert!(help.contains(opt), "{opt}: {help}");
        }
        let e = group_command(&model::ELBV2)
            .try_get_matches_from(["elbv2", "create-load-balancer", "--nmae", "x"])
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
