#!/usr/bin/env python3
# Writes the ECS model the CLI needs (botocore's, as the AWS CLI uses it): per operation its
# input members (name, type, first sentence of the docs), required members, paginator and the
# AWS CLI's --generate-cli-skeleton text.
import json, re, html, random, sys, botocore, botocore.session
from botocore.utils import ArgumentGenerator
from awscli.utils import json_encoder
from awscli.customizations.argrename import ARGUMENT_RENAMES

def first_sentence(doc):
    text = html.unescape(re.sub(r"<[^>]+>", " ", doc or ""))
    text = re.sub(r"\s+", " ", text).strip()
    m = re.match(r"(.+?\.)(\s|$)", text)
    return (m.group(1) if m else text)[:300]

def kind(shape):
    t = shape.type_name
    if t == "list":
        inner = shape.member.type_name
        return "list-of-structure" if inner == "structure" else "list"
    return t

# botocore's skeleton picks a random enum value; the first one keeps this file stable.
random.choice = lambda seq: seq[0]
s = botocore.session.get_session()
m = s.get_service_model("ecs")
pages = s.get_paginator_model("ecs")._paginator_config
g = ArgumentGenerator()
ops = {}
for op in m.operation_names:
    om = m.operation_model(op)
    sh = om.input_shape
    members = []
    for name, ms in (sh.members.items() if sh else []):
        e = {"name": name, "type": kind(ms), "doc": first_sentence(ms.documentation)}
        if getattr(ms, "enum", None):
            e["enum"] = list(ms.enum)
        if ms.type_name == "list" and getattr(ms.member, "enum", None):
            e["enum"] = list(ms.member.enum)
        members.append(e)
    entry = {
        "members": members,
        "required": list(sh.required_members) if sh else [],
        "skeleton": json.dumps(g.generate_skeleton(sh) if sh else {}, indent=4, default=json_encoder),
    }
    if op in pages:
        p = pages[op]
        entry["paginator"] = {"inputToken": p["input_token"], "outputToken": p["output_token"],
                              "limitKey": p.get("limit_key"), "resultKey": p["result_key"]}
    ops[op] = entry
# The AWS CLI's own option renames for ECS (`ecs.VERB.OLD` → NEW, VERB may be `*`).
renames = sorted(
    [k.split(".", 2)[1], k.split(".", 2)[2], v]
    for k, v in ARGUMENT_RENAMES.items()
    if k.startswith("ecs.")
)
json.dump({"botocore": botocore.__version__, "operations": ops, "renames": renames},
          sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")
