#!/usr/bin/env python3
# Writes the model of one AWS service that the CLI needs (botocore's, as the AWS CLI uses
# it): per operation its input members (name, type, first sentence of the docs), required
# members, paginator and the AWS CLI's --generate-cli-skeleton text.
#   scripts/cli-model.py ecs                        every ECS operation (src/cli/ecs_model.json)
#   scripts/cli-model.py SERVICE OPERATION...       only those operations (the ones serve
#       answers), each with the first sentence of its documentation (the verb's help) and,
#       for an awsQuery service, its output shape's types (how the XML answer is read).
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

# The types botocore's QueryParser gives an answer's values: "s" string, "i" integer,
# "f" number, "b" boolean, "t" timestamp (kept as the text, as the AWS CLI v1 prints it),
# [T] a list, {"member": T} a structure, {"__map": T} a map.
SCALARS = {"string": "s", "blob": "s", "integer": "i", "long": "i", "float": "f",
           "double": "f", "boolean": "b", "timestamp": "t"}

def types(shape, depth=0):
    if depth > 12:
        return "s"
    assert not shape.serialization.get("flattened"), shape.name
    t = shape.type_name
    if t == "structure":
        return {n: types(m, depth + 1) for n, m in shape.members.items()}
    if t == "list":
        return [types(shape.member, depth + 1)]
    if t == "map":
        return {"__map": types(shape.value, depth + 1)}
    return SCALARS[t]

service, only = sys.argv[1], sys.argv[2:]
# botocore's skeleton picks a random enum value; the first one keeps this file stable.
random.choice = lambda seq: seq[0]
s = botocore.session.get_session()
m = s.get_service_model(service)
pages = s.get_paginator_model(service)._paginator_config
g = ArgumentGenerator()
ops = {}
for op in (only or m.operation_names):
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
    if only:
        entry["doc"] = first_sentence(om.documentation)
        if m.protocol == "query":
            entry["output"] = types(om.output_shape) if om.output_shape else {}
    if op in pages:
        p = pages[op]
        entry["paginator"] = {"inputToken": p["input_token"], "outputToken": p["output_token"],
                              "limitKey": p.get("limit_key"), "resultKey": p["result_key"]}
    ops[op] = entry
# The AWS CLI's own option renames for the service (`SERVICE.VERB.OLD` → NEW, VERB may be `*`).
renames = sorted(
    [k.split(".", 2)[1], k.split(".", 2)[2], v]
    for k, v in ARGUMENT_RENAMES.items()
    if k.startswith(service + ".")
)
# ECS's is indented; the others are compact (they are embedded as they are: binary size).
json.dump({"botocore": botocore.__version__, "operations": ops, "renames": renames},
          sys.stdout, sort_keys=True, **({"separators": (",", ":")} if only else {"indent": 1}))
sys.stdout.write("\n")
