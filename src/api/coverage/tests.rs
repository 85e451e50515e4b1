//! The coverage tables against botocore's models, and docs/coverage/ against the tables.

use super::*;
use crate::ecs::botocore_model::{model_of, shape_paths};
use std::collections::{BTreeMap, BTreeSet};

/// The input member paths of each routed operation of `svc`, from its model.
fn model_members(svc: &Service) -> BTreeMap<&'static str, BTreeSet<String>> {
    let model = model_of(svc.model.0, svc.model.1);
    (svc.operations)()
        .into_iter()
        .map(|op| {
            let o = &model["operations"][op];
            assert!(
                o.is_object(),
                "{}: {op} is routed and not in the model",
                svc.slug
            );
            let members = match o["input"]["shape"].as_str() {
                Some(shape) => shape_paths(&model, shape),
                None => BTreeSet::new(),
            };
            (op, members)
        })
        .collect()
}

/// What is wrong with `svc`'s table against `members`: members without a row, rows naming
/// no member (or an operation not routed), members classified twice.
fn problems(svc: &Service, members: &BTreeMap<&'static str, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    let elsewhere: BTreeMap<&str, Elsewhere> =
        (svc.elsewhere)().into_iter().map(|e| (e.op, e)).collect();
    for (op, paths) in members {
        if let Some(e) = elsewhere.get(op) {
            let theirs: BTreeSet<&str> = e.rows.iter().map(|r| r.0).collect();
            // A member the other table keeps as one opaque value covers its own members.
            let opaque = |p: &str| {
                theirs.iter().any(|q| {
                    p.len() > q.len() && p.starts_with(q) && p[q.len()..].starts_with(['.', '['])
                })
            };
            for p in paths {
                if !theirs.contains(p.as_str()) && !opaque(p) {
                    out.push(format!("{op}.{p}: no row in {}", e.doc));
                }
            }
            if !e.superset {
                for p in &theirs {
                    if !paths.contains(*p) {
                        out.push(format!("{op}.{p}: a row of {} naming no member", e.doc));
                    }
                }
            }
            continue;
        }
        let rows: Vec<&Row> = svc.rows.iter().filter(|r| r.has_op(op)).collect();
        let under_whole = |p: &str| {
            rows.iter().any(|r| {
                r.whole
                    && p.len() > r.path.len()
                    && p.starts_with(r.path)
                    && p[r.path.len()..].starts_with(['.', '['])
            })
        };
        for p in paths {
            let n = rows.iter().filter(|r| r.path == p).count();
            match (n, under_whole(p)) {
                (0, false) => out.push(format!("{op}.{p}: no row")),
                (0, true) => {}
                (1, false) => {}
                (_, true) => out.push(format!("{op}.{p}: a row under a whole row")),
                _ => out.push(format!("{op}.{p}: {n} rows")),
            }
        }
        for r in &rows {
            if !paths.contains(r.path) {
                out.push(format!(
                    "{op}.{}: a row naming no member of the model",
                    r.path
                ));
            }
        }
    }
    for r in svc.rows {
        for op in r.ops.split_ascii_whitespace() {
            if !members.contains_key(op) {
                out.push(format!("{op}.{}: a row of an operation not routed", r.path));
            }
        }
        if r.note.trim().is_empty() {
            out.push(format!("{}.{}: a row without a note", r.ops, r.path));
        }
    }
    out
}

#[test]
fn every_member_of_every_routed_operation_is_classified() {
    let mut all = Vec::new();
    for svc in SERVICES {
        let members = model_members(svc);
        all.extend(
            problems(svc, &members)
                .into_iter()
                .map(|p| format!("{}: {p}", svc.slug)),
        );
    }
    assert!(
        all.is_empty(),
        "{} problems:\n{}",
        all.len(),
        all.join("\n")
    );
}

#[test]
fn the_check_fails_on_a_missing_or_stale_row() {
    let svc = &ecs::ECS;
    let mut members = model_members(svc);
    assert!(problems(svc, &members).is_empty());
    members
        .get_mut("StopTask")
        .unwrap()
        .insert("brandNew".into());
    assert_eq!(problems(svc, &members), ["StopTask.brandNew: no row"]);
    members.get_mut("StopTask").unwrap().remove("brandNew");
    members.get_mut("StopTask").unwrap().remove("reason");
    assert_eq!(
        problems(svc, &members),
        ["StopTask.reason: a row naming no member of the model"]
    );
}

#[test]
fn present_not_applied_members_are_found_once() {
    static ROWS: &[Row] = &[
        ap("Op", "a", "x"),
        na("Op", "b", "why b"),
        ap("Op", "b.c", "x"),
        ap("Op", "l", "x"),
        na("Op", "l[].d", "why d"),
        rf("Op", "w", "x").whole(),
    ];
    let svc = Service {
        slug: "t",
        title: "T",
        model: ("", ""),
        operations: Vec::new,
        rows: ROWS,
        elsewhere: none,
    };
    let body =
        serde_json::json!({"a": 1, "b": {"c": 2}, "l": [{"d": "x"}, {"d": ""}], "w": {"b": 1}});
    let found: Vec<String> = not_applied(&svc, "Op", &body)
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(found, ["b", "l[].d"]);
    assert!(not_applied(&svc, "Op", &serde_json::json!({"b": false, "l": []})).is_empty());
    assert!(not_applied(&svc, "Other", &body).is_empty());
}

#[test]
fn query_forms_read_as_paths() {
    let v = query_paths(
        b"Action=CreateTargetGroup&Version=2015-12-01&Name=a&Matcher.HttpCode=200\
          &Targets.member.1.Id=x&Targets.member.2.Port=80&Names.member.1=n\
          &Attributes.entry.1.key=k&Attributes.entry.1.value=v",
    );
    assert_eq!(
        v,
        serde_json::json!({"Name": "a", "Matcher": {"HttpCode": "200"},
            "Targets": [{"Id": "x", "Port": "80"}], "Names": ["n"], "Attributes": "k"})
    );
}

/// docs/coverage/<service>.md, rendered from the tables; `UPDATE_DOCS=1` rewrites them.
#[test]
fn docs_coverage_is_the_tables() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/coverage");
    let mut stale = Vec::new();
    for svc in SERVICES {
        let file = format!("{dir}/{}.md", svc.slug);
        let want = markdown(svc, &model_members(svc));
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        if have != want {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(&file, &want).unwrap();
            } else {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from api::coverage's tables; run `UPDATE_DOCS=1 cargo nextest run \
         --bin minifargate -E 'test(/api::coverage/)'` to rewrite them"
    );
}

fn markdown(svc: &Service, members: &BTreeMap<&'static str, BTreeSet<String>>) -> String {
    let mut counts: BTreeMap<Class, usize> = BTreeMap::new();
    let mut body = String::new();
    let elsewhere: BTreeMap<&str, Elsewhere> =
        (svc.elsewhere)().into_iter().map(|e| (e.op, e)).collect();
    for op in (svc.operations)() {
        body.push_str(&format!("\n## {op}\n\n"));
        if let Some(e) = elsewhere.get(op) {
            body.push_str(&format!(
                "Its {} members are classified in {}.\n",
                members[op].len(),
                e.doc
            ));
            continue;
        }
        let mut rows: Vec<&Row> = svc.rows.iter().filter(|r| r.has_op(op)).collect();
        if rows.is_empty() {
            body.push_str("No input members.\n");
            continue;
        }
        let order: Vec<&String> = members[op].iter().collect();
        rows.sort_by_key(|r| order.iter().position(|p| *p == r.path));
        body.push_str("| Member | Class | What happens here |\n|---|---|---|\n");
        for r in rows {
            *counts.entry(r.class).or_default() += 1;
            let whole = if r.whole { " (and its members)" } else { "" };
            let except = if r.except.is_empty() {
                String::new()
            } else {
                format!(" (not named in the log for {})", r.except.join(", "))
            };
            body.push_str(&format!(
                "| `{}`{whole} | {} | {}{except} |\n",
                r.path,
                r.class.label(),
                r.note.replace('|', "\\|")
            ));
        }
    }
    let counts = counts
        .iter()
        .map(|(c, n)| format!("{} {n}", c.label()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "# {} — what serve does with each request member\n\n\
         Generated from `src/api/coverage/` by its test (`UPDATE_DOCS=1` rewrites this file); \
         the test fails on any input member of botocore's {} model, for the operations serve \
         answers, that has no row here. A member is *applied* (it has an effect: where), \
         *refused* (with AWS's error: which, when), or *not applied* (accepted; serve's log \
         names it when a request carries it, as `<operation>: <member>: not applied here`, \
         and the note says where else it is reported).\n\n\
         Rows: {counts}.\n{body}",
        svc.title, svc.model.0
    )
}

#[test]
fn a_request_s_not_applied_members_are_named_from_the_real_tables() {
    // What serve's log names (`report`): an ELB form and a Cloud Map body.
    let form = b"Action=CreateLoadBalancer&Version=2015-12-01&Name=web\
        &CustomerOwnedIpv4Pool=pool&SubnetMappings.member.1.SubnetId=s\
        &SubnetMappings.member.1.AllocationId=eip&IpamPools.Ipv4IpamPoolId=p";
    let found: Vec<String> = not_applied(&elb::ELB, "CreateLoadBalancer", &query_paths(form))
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(
        found,
        [
            "CustomerOwnedIpv4Pool",
            "IpamPools",
            "SubnetMappings[].AllocationId"
        ]
    );
    let body = serde_json::json!({"Name": "svc", "NamespaceId": "ns-1",
        "HealthCheckConfig": {"Type": "HTTP"}, "HealthCheckCustomConfig": {}});
    let found = not_applied(&cloudmap::CLOUDMAP, "CreateService", &body);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "HealthCheckConfig");
    // IpAddressType ipv4 is what serve does: not named; dualstack is.
    let named = |t: &str| {
        let form = format!("Action=SetIpAddressType&LoadBalancerArn=a&IpAddressType={t}");
        not_applied(&elb::ELB, "SetIpAddressType", &query_paths(form.as_bytes())).len()
    };
    assert_eq!((named("ipv4"), named("dualstack")), (0, 1));
}
