#!/usr/bin/env python3
"""The invariants scripts/chaos-cluster checks once the faults have stopped and the
cluster has settled, from etcd and from each box:
  - no task id assigned to two instances (assignments), none running on two boxes;
  - every task RUNNING in etcd runs on its box (the box's own store says RUNNING and
    its supervisor lives), and every task running on a box is RUNNING in etcd, on that
    box's instance;
  - each instance's ledger holds exactly the reservations of the tasks placed on it and
    not STOPPED, and its CPU and memory are their sum;
  - no service above its maximumPercent of desired (and, settled, at its desired count);
  - no cgroup, task netns or task mount left of a task that no box runs.

Usage: check.py W CONFIG.json [--settle SECONDS]
  --settle: first waits (at most SECONDS) until nothing is in flight: every agent
  connected, no task between PROVISIONING and STOPPED or wanted STOPPED and not yet,
  every service at its desired count.
Prints one JSON line per violation ({"name", "detail"}) to W/violations-final.jsonl and
a line of what was seen to stdout.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcdview  # noqa: E402

W = sys.argv[1]
CFG = json.load(open(sys.argv[2]))
ETCD = CFG["etcd"]
# The hollow boxes' instance ids (HOLLOW=N): their tasks run nowhere but in etcd.
hollow = set(CFG.get("hollow", []))
SERVICES = ["svc-a", "svc-b"]
MAX_PERCENT = 200
# How long a disagreement between a task's record and its box may last after settling
# (a report on its way: the agent reports every 20 ms, the leader folds on a watch and
# reads every report again every 5 s).
AGREE_WITHIN = 30


def box_ids(box):
    """Every instance id box has had (a deregistered box comes back as a new one)."""
    ids = set()
    f = os.path.join(W, f"box{box['i']}", "instance-ids")
    if os.path.exists(f):
        ids |= {line.strip() for line in open(f) if line.strip()}
    cur = os.path.join(box["root"], "agent", "instance-id")
    if os.path.exists(cur):
        ids.add(open(cur).read().strip())
    return ids


def current_id(box):
    cur = os.path.join(box["root"], "agent", "instance-id")
    return open(cur).read().strip() if os.path.exists(cur) else None


def alive_supervisor(pidfile):
    try:
        pid = int(open(pidfile).read().strip())
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except (OSError, ValueError):
        return None
    return pid if b"minifargate" in cmd or os.path.basename(CFG["mf"]).encode() in cmd else None


def mf(box, *args):
    cmd = ["nsenter", f"--net=/run/netns/{box['ns']}", CFG["mf"], "--root", box["root"],
           "--run-root", box["run"], "--config", CFG["config"], *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} on box{box['i']}: {r.stderr.strip()[:300]}")
    return json.loads(r.stdout) if r.stdout.strip() else {}


def local(box):
    """{task id: (local lastStatus, supervisor pid or None)} of box's tasks that have a
    run dir or are not STOPPED in its store."""
    out = {}
    tasks_dir = os.path.join(box["run"], "tasks")
    live = {}
    if os.path.isdir(tasks_dir):
        for tid in os.listdir(tasks_dir):
            live[tid] = alive_supervisor(os.path.join(tasks_dir, tid, "supervisor.pid"))
    arns = mf(box, "list-tasks", "--cluster", "default").get("taskArns", [])
    arns += mf(box, "list-tasks", "--cluster", "default",
               "--desired-status", "STOPPED").get("taskArns", [])
    ids = {a.rsplit("/", 1)[-1] for a in arns} | {t for t, p in live.items() if p}
    ids = sorted(ids)
    for i in range(0, len(ids), 100):
        d = mf(box, "describe-tasks", "--cluster", "default", "--tasks", *ids[i:i + 100])
        for t in d.get("tasks", []):
            tid = t["taskArn"].rsplit("/", 1)[-1]
            out[tid] = (t.get("lastStatus"), live.get(tid))
    for tid, p in live.items():
        if p and tid not in out:
            out[tid] = ("UNKNOWN-LOCALLY", p)
    return out


def services(view):
    import boto3
    import botocore.config
    cfg = botocore.config.Config(retries={"total_max_attempts": 3}, connect_timeout=3,
                                 read_timeout=20)
    for url in CFG["serves"]:
        try:
            c = boto3.client("ecs", endpoint_url=url, region_name="us-east-1", config=cfg)
            r = c.describe_services(services=SERVICES)
            return {s["serviceName"]: s for s in r["services"]}
        except Exception:  # noqa: BLE001 - the other serve
            continue
    return None


def in_flight(view, svcs):
    why = []
    for b in CFG["boxes"]:
        iid = current_id(b)
        if iid and iid not in view.alive:
            why.append(f"box{b['i']}'s instance {iid} not connected")
    for tid, r in view.records.items():
        t = r.get("task", {})
        last, want = t.get("lastStatus"), t.get("desiredStatus")
        if last not in ("RUNNING", "STOPPED") or (want == "STOPPED" and last != "STOPPED"):
            why.append(f"task {tid} {last} (desired {want})")
    for tid, insts in view.assignments.items():
        r = view.records.get(tid, {}).get("task", {})
        if r.get("lastStatus") == "STOPPED":
            why.append(f"task {tid} STOPPED and still assigned")
    if svcs is None:
        why.append("no serve answered DescribeServices")
    else:
        for s in SERVICES:
            n = len(view.service_tasks(s))
            d = svcs.get(s, {}).get("desiredCount")
            if n != d:
                why.append(f"service {s}: {n} tasks, desired {d}")
    return why


def main():
    settle = 0.0
    if "--settle" in sys.argv:
        settle = float(sys.argv[sys.argv.index("--settle") + 1])
    out = open(os.path.join(W, "violations-final.jsonl"), "a", buffering=1)
    found = []

    def violation(name, detail):
        found.append(name)
        out.write(json.dumps({"name": name, "detail": detail}) + "\n")
        print(f"VIOLATION {name}: {detail}", file=sys.stderr)

    start = time.time()
    while True:
        view = etcdview.View(ETCD)
        svcs = services(view)
        why = in_flight(view, svcs)
        if not why or time.time() - start > settle:
            break
        time.sleep(2)
    waited = time.time() - start
    if why:
        violation("cluster did not settle",
                  f"after {waited:.0f} s: " + "; ".join(why[:20]) + (" …" if len(why) > 20 else ""))
    for u in view.undecodable:
        violation("undecodable key", u)

    # One task, one instance, one box.
    for tid, insts in view.assignments.items():
        if len(insts) > 1:
            violation("task assigned to two instances", f"task {tid}: {sorted(insts)}")
    boxes = CFG["boxes"]
    owner = {}
    for b in boxes:
        for iid in box_ids(b):
            owner[iid] = b["i"]
    def read_locals():
        out = {}
        for b in boxes:
            try:
                out[b["i"]] = local(b)
            except Exception as e:  # noqa: BLE001 - reported, the other boxes still checked
                violation("box unreadable", str(e))
                out[b["i"]] = {}
        return out

    def disagreements(view, locals_):
        """(name, detail) of each task whose record and box disagree."""
        out = []
        running_on = {}
        for i, tasks in locals_.items():
            for tid, (last, pid) in tasks.items():
                if pid and last != "STOPPED":
                    running_on.setdefault(tid, []).append(i)
        for tid, bs in running_on.items():
            if len(bs) > 1:
                out.append(("task runs on two boxes", f"task {tid} on boxes {bs}"))
        # RUNNING in etcd <=> running on its box.
        for tid, r in view.records.items():
            t = r.get("task", {})
            if t.get("lastStatus") != "RUNNING":
                continue
            box = owner.get(r.get("instance"))
            if box is None and r.get("instance") in hollow:
                # A hollow box's (HOLLOW=N): it runs nothing but its reports.
                continue
            if box is None:
                out.append(("RUNNING in etcd on no box",
                              f"task {tid} on instance {r.get('instance')}"))
                continue
            last, pid = locals_.get(box, {}).get(tid, (None, None))
            if last != "RUNNING" or not pid:
                out.append(("RUNNING in etcd, not running on its box",
                              f"task {tid} ({t.get('group')}) on box{box}: locally {last}, "
                              f"supervisor {'alive' if pid else 'gone'}"))
        for i, tasks in locals_.items():
            b = next(b for b in boxes if b["i"] == i)
            cur = current_id(b)
            for tid, (last, pid) in tasks.items():
                if not pid or last == "STOPPED":
                    continue
                r = view.records.get(tid)
                st = r.get("task", {}).get("lastStatus") if r else None
                if st != "RUNNING" or r.get("instance") != cur:
                    out.append(("running on a box, not RUNNING in etcd there",
                                  f"task {tid} on box{i} (locally {last}, supervisor {pid}): in etcd "
                                  + (f"{st} on instance {r.get('instance')}" if r else "no record")
                                  + f"; box{i} is instance {cur}"))
        return out

    # etcd is read before the boxes: a task that ends on its own in between (the
    # standalone tasks sleep 10-90 s) is seen stopped on its box and RUNNING in etcd,
    # its report on its way. A disagreement is one that lasts: both read again, for up
    # to AGREE_WITHIN s, and what still disagrees then is a violation.
    locals_ = read_locals()
    found_now = disagreements(view, locals_)
    agree_by = time.time() + AGREE_WITHIN
    while found_now and time.time() < agree_by:
        time.sleep(3)
        view = etcdview.View(ETCD)
        locals_ = read_locals()
        found_now = disagreements(view, locals_)
    for name, detail in found_now:
        violation(name, detail)

    # Ledgers.
    for iid in sorted(set(view.instances) | set(view.ledgers)):
        ledger = view.ledgers.get(iid, {})
        placed = {tid: r["task"] for tid, r in view.records.items()
                  if r.get("instance") == iid and r.get("task", {}).get("lastStatus") != "STOPPED"}
        extra = sorted(set(ledger) - set(placed))
        missing = sorted(set(placed) - set(ledger))
        cpu = sum(int(x.get("cpu", 0)) for x in ledger.values())
        mem = sum(int(x.get("memory", 0)) for x in ledger.values())
        want_cpu = sum(int(t.get("cpu") or 0) for t in placed.values())
        want_mem = sum(int(t.get("memory") or 0) for t in placed.values())
        if extra or missing or cpu != want_cpu or mem != want_mem:
            detail = (f"instance {iid} (box{owner.get(iid, '?')}, {view.status.get(iid)}): ledger "
                      f"{len(ledger)} tasks {cpu} CPU {mem} MiB, placed and not STOPPED "
                      f"{len(placed)} tasks {want_cpu} CPU {want_mem} MiB")
            if extra:
                states = [f"{t}:{view.records.get(t, {}).get('task', {}).get('lastStatus', 'no record')}"
                          for t in extra[:5]]
                detail += f"; reserved but not placed: {', '.join(states)}"
            if missing:
                detail += f"; placed but not reserved: {', '.join(missing[:5])}"
            violation("ledger is not the sum of its tasks' reservations", detail)

    # RunTask's answers: a call answered an error placed nothing (one answered OK placed
    # what it said).
    outcomes = {}
    f = os.path.join(W, "run-task-outcomes")
    if os.path.exists(f):
        for line in open(f):
            parts = line.split()
            if len(parts) >= 3:
                outcomes[parts[0]] = (parts[1], int(parts[2]))
    placed_by = {}
    for tid, r in view.records.items():
        sb = r.get("task", {}).get("startedBy")
        if sb in outcomes:
            placed_by.setdefault(sb, []).append(tid)
    for sb, tids in sorted(placed_by.items()):
        outcome, answered = outcomes[sb]
        if outcome not in ("ok", "unreachable"):
            violation("RunTask answered an error, yet placed tasks",
                      f"startedBy {sb}: answered {outcome}, {len(tids)} task(s) placed: "
                      + ", ".join(f"{t} ({view.records[t]['task'].get('lastStatus')})" for t in tids))
        elif outcome == "ok" and len(tids) > answered:
            violation("RunTask placed more tasks than it answered",
                      f"startedBy {sb}: answered {answered}, placed {len(tids)}")

    # Services.
    svcs = services(view) or {}
    for s in SERVICES:
        n = len(view.service_tasks(s))
        d = svcs.get(s, {}).get("desiredCount")
        if d is not None and n > d * MAX_PERCENT // 100:
            violation("service above maximumPercent", f"{s}: {n} tasks, desired {d}")

    # Leftovers of tasks no box runs.
    ids = set(view.records)
    for b in boxes:
        d = os.path.join(b["run"], "tasks")
        if os.path.isdir(d):
            ids |= set(os.listdir(d))
    # Every task of the run, for the leak check after the teardown (scripts/cluster.sh).
    with open(os.path.join(W, "ids"), "a") as f:
        for tid in sorted(ids):
            f.write(tid + "\n")
    mounts = open("/proc/self/mountinfo").read()
    running_on = {tid for tasks in locals_.values() for tid, (last, pid) in tasks.items()
                  if pid and last != "STOPPED"}
    for tid in sorted(ids - running_on):
        for cg in [f"/sys/fs/cgroup/minifargate/{tid}"]:
            if os.path.isdir(cg):
                violation("cgroup left of a task no box runs", cg)
        if os.path.exists(f"/run/netns/mfg-{tid}"):
            violation("netns left of a task no box runs", f"/run/netns/mfg-{tid}")
        if f"/{tid}/" in mounts or mounts.count(f"/{tid} ") > 0:
            n = sum(1 for line in mounts.splitlines() if tid in line.split()[4])
            if n:
                violation("mounts left of a task no box runs", f"task {tid}: {n} mounts")

    seen = {
        "revision": view.revision, "settled_after_s": round(waited, 1),
        "records": len(view.records),
        "running_in_etcd": sum(1 for r in view.records.values()
                               if r.get("task", {}).get("lastStatus") == "RUNNING"),
        "running_on_boxes": {f"box{i}": sum(1 for t in ts.values() if t[1] and t[0] != "STOPPED")
                             for i, ts in locals_.items()},
        "services": {s: {"desired": svcs.get(s, {}).get("desiredCount"),
                         "in_etcd": len(view.service_tasks(s))} for s in SERVICES},
        "violations": len(found),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
