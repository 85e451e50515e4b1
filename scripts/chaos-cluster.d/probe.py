#!/usr/bin/env python3
"""The calls of scripts/chaos-cluster's probe: a task on one box asking a service on
another, by its Cloud Map name and through a Service Connect alias, all run long
(docs/cluster.md "Fault injection"). The probe's two boxes get no fault but agent
restarts (`probe-restart`), and the API's streams leave their instances alone, so every
failed call is a finding: a box's data plane (its tasks' DNS server, its Service Connect
listeners, its routes) must outlive its agent, etcd's faults and the leader's death.

Usage:
  probe.py setup W CALLER_BOX SERVER_BOX   (env: AWS_* keys) creates the namespace
      probe.local, service `web` (web.probe.local:8080) and `sc` (alias sc.probe:9000) on
      box SERVER_BOX and the caller on box CALLER_BOX, and prints the caller's task id
      once it runs.
  probe.py check W LOG MARK CALLER_BOX SERVER_BOX SPAN   reads the caller's lines in LOG
      from line MARK on: writes every failed call to W/violations-probe.jsonl, and a
      violation when the lines cover less than 90 % of SPAN seconds (the faults' time: a
      caller stopped early checked nothing after), and prints the counts as JSON. A call that failed within a minute after a serve declared one of the
      probe's boxes lost (its restart outlasted the lease and --lost-instance-after, so
      its tasks were replaced: whether that declaration was due is lost.py's to say) is
      counted as excused, not as a violation.
"""
import json
import os
import re
import sys
import time

import boto3
import botocore.config


def serve_url(w):
    for d in sorted(os.listdir(w)):
        f = os.path.join(w, d, "url")
        if d.startswith("serve") and os.path.exists(f):
            return open(f).read().strip()
    sys.exit("probe: no serve's url in " + w)


# Each line: `<UTC time> DNS OK <answer>` / `DNS FAIL …`, then the same for `SC`.
CALLER = (
    "trap 'exit 0' TERM; while true; do "
    "d=$(busybox timeout 3 busybox wget -q -O - http://web.probe.local:8080/ 2>&1) "
    "&& echo \"$(busybox date -u +%T) DNS OK $d\" || echo \"$(busybox date -u +%T) DNS FAIL $d\"; "
    "s=$(busybox timeout 3 busybox wget -q -O - http://sc.probe:9000/ 2>&1) "
    "&& echo \"$(busybox date -u +%T) SC OK $s\" || echo \"$(busybox date -u +%T) SC FAIL $s\"; "
    "sleep 0.5; done"
)
SERVER = (
    "me=$(busybox ip -4 -o addr show eth0 | busybox awk '{print $4}' | busybox cut -d/ -f1); "
    "busybox mkdir -p /www && echo $me > /www/index.html && exec busybox httpd -f -p 8080 -h /www"
)


def task_definition(family, command, port_name=None):
    mapping = {"containerPort": 8080}
    if port_name:
        mapping["name"] = port_name
    c = {
        "name": "main", "image": "public.ecr.aws/docker/library/busybox:1.36",
        "command": ["sh", "-c", command], "stopTimeout": 2, "essential": True,
    }
    if family != "probe-caller":
        c["portMappings"] = [mapping]
    return {
        "family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["EC2"],
        "cpu": "128", "memory": "64", "containerDefinitions": [c],
    }


def setup(w, caller_box, server_box):
    cfg = botocore.config.Config(retries={"total_max_attempts": 3}, read_timeout=30)
    url = serve_url(w)
    ecs = boto3.client("ecs", endpoint_url=url, region_name="us-east-1", config=cfg)
    sd = boto3.client("servicediscovery", endpoint_url=url, region_name="us-east-1",
                      config=cfg)
    op = sd.create_private_dns_namespace(Name="probe.local", Vpc="vpc-1")["OperationId"]
    for _ in range(100):
        o = sd.get_operation(OperationId=op)["Operation"]
        if o["Status"] == "SUCCESS":
            break
        time.sleep(0.1)
    ns = o["Targets"]["NAMESPACE"]
    registry = sd.create_service(
        Name="web", NamespaceId=ns,
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 5}]},
    )["Service"]["Arn"]
    ecs.register_task_definition(**task_definition("probe-web", SERVER))
    ecs.register_task_definition(**task_definition("probe-sc", SERVER, "web"))
    ecs.register_task_definition(**task_definition("probe-caller", CALLER))
    ecs.create_cluster(clusterName="default")

    def on(box):
        return [{"type": "memberOf", "expression": f"attribute:box==box{box}"}]

    common = {"desiredCount": 1, "launchType": "EC2"}
    ecs.create_service(serviceName="probe-web", taskDefinition="probe-web",
                       placementConstraints=on(server_box),
                       serviceRegistries=[{"registryArn": registry}], **common)
    ecs.create_service(serviceName="probe-sc", taskDefinition="probe-sc",
                       placementConstraints=on(server_box),
                       serviceConnectConfiguration={
                           "enabled": True, "namespace": "probe.local",
                           "services": [{"portName": "web", "discoveryName": "sc",
                                         "clientAliases": [{"port": 9000,
                                                            "dnsName": "sc.probe"}]}]},
                       **common)
    ecs.create_service(serviceName="probe-caller", taskDefinition="probe-caller",
                       placementConstraints=on(caller_box),
                       serviceConnectConfiguration={"enabled": True,
                                                    "namespace": "probe.local"},
                       **common)
    deadline = time.time() + 180
    while time.time() < deadline:
        arns = ecs.list_tasks(serviceName="probe-caller")["taskArns"]
        if arns:
            t = ecs.describe_tasks(tasks=arns)["tasks"][0]
            if t["lastStatus"] == "RUNNING":
                print(t["taskArn"].rsplit("/", 1)[-1])
                return
        time.sleep(1)
    sys.exit("probe: the caller task is not RUNNING after 180 s")


def seconds(hms):
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


# How long after a probe box was declared lost its calls may fail: its tasks replaced,
# started and registered again (a loaded machine's pull and start included).
EXCUSED_FOR = 60.0


def declared_lost(w, boxes):
    """The times (s of the UTC day) a serve declared one of `boxes` lost."""
    ids = set()
    for b in boxes:
        try:
            ids.update(open(os.path.join(w, f"box{b}", "instance-ids")).read().split())
        except OSError:
            pass
    times = []
    for name in os.listdir(w):
        path = os.path.join(w, name, "serve.log")
        if not (name.startswith("serve") and os.path.exists(path)):
            continue
        for line in open(path, errors="replace"):
            m = re.search(r"T(\d\d:\d\d:[\d.]+)Z.*cluster reaper: the lost instance's tasks "
                          r"STOPPED instance=\S*/(\w+)", line)
            if m and m.group(2) in ids:
                times.append(seconds(m.group(1)))
    return times


def check(w, log, mark, boxes, span):
    lines = open(log, errors="replace").read().splitlines()[mark:]
    seen = {"DNS OK": 0, "SC OK": 0, "DNS FAIL": 0, "SC FAIL": 0, "excused": 0}
    lost = declared_lost(w, boxes)
    with open(os.path.join(w, "violations-probe.jsonl"), "a") as out:
        for line in lines:
            words = line.split(maxsplit=3)
            if len(words) < 3:
                continue
            what = f"{words[1]} {words[2]}"
            if what in seen:
                seen[what] += 1
            if words[2] == "FAIL" and re.fullmatch(r"\d\d:\d\d:\d\d", words[0]) and any(
                    t - 2 <= seconds(words[0]) <= t + EXCUSED_FOR for t in lost):
                seen["excused"] += 1
                continue
            if words[2] == "FAIL":
                name = ("a call by Cloud Map name failed" if words[1] == "DNS"
                        else "a call through a Service Connect alias failed")
                out.write(json.dumps({"t": time.time(), "name": name,
                                      "detail": f"the probe's caller at {line}"}) + "\n")
    # The caller must have called all along: a caller task stopped (its box declared
    # lost, its service's task replaced) checks nothing from then on.
    stamps = [seconds(l.split()[0]) for l in lines
              if re.match(r"\d\d:\d\d:\d\d ", l)]
    covered = (stamps[-1] - stamps[0]) % 86400 if stamps else 0
    seen["covered_s"] = covered
    if covered < 0.9 * span:
        with open(os.path.join(w, "violations-probe.jsonl"), "a") as out:
            out.write(json.dumps({
                "t": time.time(), "name": "the probe stopped calling",
                "detail": f"its caller's lines cover {covered} s of the {span} s of faults "
                          f"(was its task stopped? {len(lines)} lines from line {mark} of {log})"})
                      + "\n")
    if seen["DNS OK"] == 0 or seen["SC OK"] == 0:
        with open(os.path.join(w, "violations-probe.jsonl"), "a") as out:
            out.write(json.dumps({"t": time.time(), "name": "the probe made no call",
                                  "detail": f"{len(lines)} lines from line {mark} of {log}"})
                      + "\n")
    print(json.dumps(seen))


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:7], int(sys.argv[7]))
    else:
        sys.exit(__doc__)
