#!/usr/bin/env python3
"""The check "no box whose agent kept running is ever declared lost" (issue 73,
docs/cluster.md "Fault injection"): every time a serve's reaper stopped a lost
instance's tasks (its log's "cluster reaper: the lost instance's tasks STOPPED
instance=ARN"), the instance's box must have had a fault that stopped its agent's
progress shortly before: agent-stop-long, agent-wedge, agent-restart, link-down or a
reprovision (faults.log). A box lost during anything else (an etcd fault, a leader
kill, or nothing) is a violation: its agent kept running and renewing.

Usage: lost.py W LEASE LOST STALL   (prints one JSON violation a line to
W/violations-lost.jsonl; the run's times are UTC times of one day)."""
import glob
import json
import os
import re
import sys

W, LEASE, LOST, STALL = sys.argv[1], *map(float, sys.argv[2:5])
EXCUSES = ("agent-stop-long", "agent-wedge", "agent-restart", "link-down", "reprovision")
# How long after a fault's start its box may still be declared lost: the fault's own
# length, then a lease and the grace, the stall limit (a wedge), and the reaper's period
# and a loaded machine's slack.
SLACK = LEASE + LOST + STALL + 15


def seconds(hms):
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


# box number -> [(start, end)] of the faults that excuse its being lost.
windows = {}
with open(os.path.join(W, "faults.log")) as f:
    for line in f:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in EXCUSES:
            continue
        box = re.match(r"box(\d+)", parts[2])
        if not box:
            continue
        start = seconds(parts[0])
        length = re.search(r"(?:for|again) ([\d.]+) s", line)
        end = start + (float(length.group(1)) if length else 0) + SLACK
        windows.setdefault(int(box.group(1)), []).append((start, end))

# instance id -> box number.
boxes = {}
for path in glob.glob(os.path.join(W, "box*", "instance-ids")):
    b = int(re.search(r"box(\d+)", path).group(1))
    for iid in open(path).read().split():
        boxes[iid] = b

out = open(os.path.join(W, "violations-lost.jsonl"), "a", buffering=1)
found = 0
stamp = re.compile(r"\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d(?:\.\d+)?)")
for log in glob.glob(os.path.join(W, "serve*", "serve.log")):
    for line in open(log, errors="replace"):
        if "the lost instance's tasks STOPPED" not in line:
            continue
        t = stamp.search(line)
        arn = re.search(r"instance=(\S+)", line)
        if not t or not arn:
            continue
        when = seconds(t.group(1))
        iid = arn.group(1).rsplit("/", 1)[-1]
        b = boxes.get(iid)
        if b is not None and any(s <= when <= e for s, e in windows.get(b, [])):
            continue
        found += 1
        out.write(json.dumps({
            "name": "a box whose agent kept running declared lost",
            "detail": f"box{b if b is not None else '?'} instance {iid} at {t.group(1)} "
                      f"({os.path.basename(os.path.dirname(log))}): no agent-stop-long, "
                      "agent-wedge, agent-restart, link-down or reprovision of that box before",
        }) + "\n")
print(f"lost boxes without a fault that stopped their agent: {found}")
