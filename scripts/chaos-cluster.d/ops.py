#!/usr/bin/env python3
"""The operations of scripts/chaos-cluster: concurrent streams of RunTask, StopTask,
UpdateService (scale up and down), UpdateContainerInstancesState (DRAINING, then ACTIVE
again) and DeregisterContainerInstance (with force; the script then brings the box back
as a new instance), through boto3 against the serves (whichever answers), until the
file W/ops-stop exists. A sampler reads etcd every 2 s for what must never be seen
even mid-run: a task assigned to two instances, a service above its maximumPercent.

Usage: ops.py W   (env: CHAOS_ETCD, comma-separated etcd endpoints; BOXES; AWS_* keys)
Writes W/ops.json (counts) and W/violations-run.jsonl.
"""
import json
import os
import random
import sys
import threading
import time
import traceback
import uuid

import boto3
import botocore.config
import botocore.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcdview  # noqa: E402

W = sys.argv[1]
ETCD = os.environ["CHAOS_ETCD"].split(",")
BOXES = [int(b) for b in os.environ.get("BOXES", "1 2 3").split()]
SERVICES = ["svc-a", "svc-b"]
MAX_PERCENT = 200
MAX_DESIRED = int(os.environ.get("MAX_DESIRED", "4"))
MAX_STANDALONE = int(os.environ.get("MAX_STANDALONE", "6"))
DEREGISTER_EVERY = float(os.environ.get("DEREGISTER_EVERY", "150"))
# A scale-down is not a maximumPercent breach while the scheduler has not stopped the
# extra tasks yet: the limit is the largest desired count that may have been in force in
# this window.
DESIRED_WINDOW = 20.0

lock = threading.Lock()
counts = {}
standalone = set()
# Per service, each UpdateService's count as a list [start, count, answered]: `answered`
# is when an answer said what is in force (None while the call is in flight or when no
# answer came: such a count may yet be taken, and the one before it may still be in force).
desired_log = {s: [[0.0, 2, 0.0]] for s in SERVICES}


def desired_limit(log, since):
    """The largest desired count that may have been in force at some time after `since`.
    A count may be in force from its call's start (the call may be taken at once) until
    a later call's answer says another count is (it may be taken only at its end: an
    UpdateService can take seconds, e.g. while the cluster has no leader)."""
    limit = 0
    for i, (_, n, _) in enumerate(log):
        until = next((e[2] for e in log[i + 1:] if e[2] is not None), None)
        if until is None or until >= since:
            limit = max(limit, n)
    return limit


violations = open(os.path.join(W, "violations-run.jsonl"), "a", buffering=1)
events = open(os.path.join(W, "ops.log"), "a", buffering=1)


def stopping():
    return os.path.exists(os.path.join(W, "ops-stop"))


last_outcome = {}


def count(op, outcome):
    last_outcome[threading.get_ident()] = outcome
    with lock:
        c = counts.setdefault(op, {})
        c[outcome] = c.get(outcome, 0) + 1


def note(line):
    events.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def violation(name, detail):
    violations.write(json.dumps({"t": time.time(), "name": name, "detail": detail}) + "\n")
    note(f"VIOLATION {name}: {detail}")


_clients = {}


def serves():
    urls = []
    for d in sorted(os.listdir(W)):
        f = os.path.join(W, d, "url")
        if d.startswith("serve") and os.path.exists(f):
            urls.append(open(f).read().strip())
    return urls


def client(url):
    if url not in _clients:
        cfg = botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=3,
                                     read_timeout=20)
        with lock:
            _clients[url] = boto3.client("ecs", endpoint_url=url, region_name="us-east-1",
                                         config=cfg)
    return _clients[url]


def call(op, **kw):
    """One API call through a serve that answers (the other one on a connection error);
    counted as ok, the error's code, or unreachable."""
    urls = serves()
    random.shuffle(urls)
    for url in urls:
        try:
            r = getattr(client(url), op)(**kw)
            count(op, "ok")
            return r
        except (botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ConnectTimeoutError):
            continue
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            count(op, code)
            note(f"{op} {code}: {e.response.get('Error', {}).get('Message', '')[:300]}")
            return None
    count(op, "unreachable")
    return None


def instance_id(box):
    try:
        return open(os.path.join(W, f"box{box}", "root", "agent", "instance-id")).read().strip()
    except OSError:
        return None


def setup():
    td = {
        "family": "chaos", "networkMode": "awsvpc", "requiresCompatibilities": ["EC2"],
        "cpu": "128", "memory": "64",
        "containerDefinitions": [{
            "name": "app", "image": "public.ecr.aws/docker/library/busybox:1.36",
            "essential": True, "stopTimeout": 2,
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        }],
    }
    for _ in range(30):
        if call("register_task_definition", **td) and call("create_cluster", clusterName="default"):
            break
        if counts.get("register_task_definition", {}).get("ClientException"):
            sys.exit("ops: the task definition was refused: see ops.log")
        time.sleep(1)
    else:
        sys.exit("ops: the serves did not take the task definition")
    for s in SERVICES:
        call("create_service", serviceName=s, taskDefinition="chaos", desiredCount=2,
             launchType="EC2",
             deploymentConfiguration={"maximumPercent": MAX_PERCENT, "minimumHealthyPercent": 50},
             placementStrategy=[{"type": "spread", "field": "instanceId"}])


def pace(lo, hi):
    end = time.time() + random.uniform(lo, hi)
    while time.time() < end and not stopping():
        time.sleep(0.2)


serial = iter(range(1, 1 << 62))
outcomes = open(os.path.join(W, "run-task-outcomes"), "a", buffering=1)


def run_stream():
    while not stopping():
        with lock:
            room = MAX_STANDALONE - len(standalone)
            n_call = next(serial)
        if room > 0:
            n = random.randint(1, min(3, room))
            # Each call's own startedBy: check.py finds the tasks of a call that was answered
            # an error (W/run-task-outcomes: "startedBy outcome answered asked").
            # One clientToken for the call, whichever serve answers it: `call` tries the
            # other serve after a timeout, and the first may have placed the tasks by then
            # (an SDK's own retries reuse the token the same way; botocore makes a new one
            # per invocation, so without it the second serve would place them again).
            r = call("run_task", taskDefinition="chaos", count=n, launchType="EC2",
                     clientToken=str(uuid.uuid4()),
                     startedBy=f"chaos-{n_call}",
                     overrides={"containerOverrides": [{"name": "app", "command": [
                         "sh", "-c", f"trap 'exit 0' TERM; sleep {random.randint(10, 90)} & wait"]}]})
            with lock:
                outcomes.write(f"chaos-{n_call} {last_outcome.get(threading.get_ident(), '?')}"
                               f" {len(r.get('tasks', [])) if r else 0} {n}\n")
            if r:
                with lock:
                    for t in r.get("tasks", []):
                        standalone.add(t["taskArn"])
                for f in r.get("failures", []):
                    count("run_task.failure", f.get("reason", "?"))
        pace(1, 3)


def stop_stream():
    while not stopping():
        pace(1.5, 4)
        with lock:
            pick = random.choice(sorted(standalone)) if standalone else None
        if not pick:
            continue
        # Each call's own reason: an answer that was an error, yet took effect, shows it in
        # the task's assignment or record.
        with lock:
            reason = f"chaos: StopTask #{next(serial)}"
        if call("stop_task", task=pick, reason=reason) is not None:
            continue
        outcome = last_outcome.get(threading.get_ident())
        if outcome == "unreachable" or outcome == "InvalidParameterException":
            continue  # no answer (it may yet be taken), or the task is gone: nothing to judge
        tid = pick.rsplit("/", 1)[-1]
        try:
            v = etcdview.View(ETCD)
        except Exception:  # noqa: BLE001 - etcd down is a fault, not a finding
            continue
        reasons = [a.get("stoppedReason") for a in v.assignments.get(tid, {}).values()]
        reasons.append(v.records.get(tid, {}).get("task", {}).get("stoppedReason"))
        if reason in reasons:
            violation("StopTask answered an error, yet took effect",
                      f"task {tid}: answered {outcome}; its stoppedReason is {reason!r} in etcd")


def prune_stream():
    """Forgets standalone tasks that are STOPPED (by StopTask, their own exit, a fault)."""
    while not stopping():
        pace(5, 5)
        with lock:
            arns = sorted(standalone)
        for i in range(0, len(arns), 100):
            r = call("describe_tasks", tasks=arns[i:i + 100])
            if r:
                with lock:
                    for t in r.get("tasks", []):
                        if t.get("lastStatus") == "STOPPED":
                            standalone.discard(t["taskArn"])


def scale_stream():
    while not stopping():
        pace(4, 9)
        s = random.choice(SERVICES)
        n = random.randint(0, MAX_DESIRED)
        try:
            was = etcdview.desired_counts(ETCD).get(s)
        except Exception:  # noqa: BLE001 - etcd down is a fault, not a finding
            was = None
        # Logged before the call: a call whose answer is lost may still have been taken.
        entry = [time.time(), n, None]
        with lock:
            desired_log[s].append(entry)
        answered = call("update_service", service=s, desiredCount=n) is not None
        outcome = last_outcome.get(threading.get_ident())
        note(f"update_service {s} desiredCount {was} -> {n}: {outcome}")
        if answered:
            with lock:
                entry[2] = time.time()
            continue
        if outcome == "unreachable" or was is None:
            continue  # no answer: it may yet be taken; the logged count stays
        # An error answer: was it taken all the same? What etcd has is the count in force
        # (the limit is judged on it, not on a change that was refused).
        try:
            now = etcdview.desired_counts(ETCD).get(s)
        except Exception:  # noqa: BLE001
            continue
        if now == n and was != n:
            violation("UpdateService answered an error, yet took effect",
                      f"{s}: answered {outcome}; desiredCount {was} -> {n} in etcd")
        elif now is not None:
            with lock:
                entry[1], entry[2] = now, time.time()


def drain_stream():
    while not stopping():
        pace(15, 30)
        box = random.choice(BOXES)
        iid = instance_id(box)
        if not iid or os.path.exists(os.path.join(W, f"reprovision-{box}")):
            continue
        note(f"box{box} ({iid}) DRAINING")
        state_change(iid, "DRAINING")
        pace(5, 12)
        state_change(iid, "ACTIVE")
        note(f"box{box} ({iid}) ACTIVE")


def state_change(iid, status):
    """UpdateContainerInstancesState to `status`; an error answer (not a lost one) is
    judged against etcd: the instance's status must not have become `status` by this call.
    Only a change is judged (an instance already at `status` tells nothing)."""
    try:
        was = etcdview.View(ETCD).status.get(iid)
    except Exception:  # noqa: BLE001 - etcd down is a fault, not a finding
        was = None
    r = call("update_container_instances_state", containerInstances=[iid], status=status)
    outcome = last_outcome.get(threading.get_ident())
    if r is not None or outcome == "unreachable" or was is None or was == status:
        return
    try:
        now = etcdview.View(ETCD).status.get(iid)
    except Exception:  # noqa: BLE001
        return
    if now == status:
        violation("UpdateContainerInstancesState answered an error, yet took effect",
                  f"instance {iid}: answered {outcome}; status {was} -> {now} in etcd")


def deregister_stream():
    pace(DEREGISTER_EVERY / 2, DEREGISTER_EVERY)
    while not stopping():
        box = random.choice(BOXES)
        iid = instance_id(box)
        busy = [b for b in BOXES if os.path.exists(os.path.join(W, f"reprovision-{b}"))]
        if iid and not busy:
            note(f"box{box} ({iid}) deregistered with force")
            done = call("deregister_container_instance", containerInstance=iid, force=True)
            outcome = last_outcome.get(threading.get_ident())
            if not done:
                # An error answer: was it done all the same?
                for _ in range(10):
                    d = call("describe_container_instances", containerInstances=[iid])
                    if d:
                        break
                    time.sleep(1)
                st = [i.get("status") for i in (d or {}).get("containerInstances", [])]
                if st == ["INACTIVE"]:
                    if outcome != "unreachable":
                        violation("DeregisterContainerInstance answered an error, yet took effect",
                                  f"answered {outcome}; instance {iid} (box{box}) is INACTIVE")
                    done = True
            if done:
                # The script stops the box's agent and starts it as a new instance.
                open(os.path.join(W, f"reprovision-{box}"), "w").write(iid + "\n")
        pace(DEREGISTER_EVERY * 0.75, DEREGISTER_EVERY * 1.25)


def sampler():
    seen_double = set()
    while not stopping():
        time.sleep(2)
        try:
            v = etcdview.View(ETCD)
        except Exception as e:  # noqa: BLE001 - etcd down is a fault, not a finding
            count("sample", "etcd-unreachable")
            note(f"sample: {e}")
            continue
        count("sample", "ok")
        for task, insts in v.assignments.items():
            if len(insts) > 1 and task not in seen_double:
                seen_double.add(task)
                violation("task assigned to two instances",
                          f"task {task} assigned to {sorted(insts)} (revision {v.revision})")
        now = time.time()
        for s in SERVICES:
            with lock:
                limit_of = desired_limit(desired_log[s], now - DESIRED_WINDOW)
            tasks = v.service_tasks(s)
            limit = limit_of * MAX_PERCENT // 100
            if len(tasks) > limit:
                # Above the limit is a breach when the scheduler placed a task meanwhile
                # (maximumPercent bounds launches); a scale-down not yet carried out (no
                # leader, a box cut off) is noted only.
                fresh = [t for t in tasks if v.created_at(t) >= now - DESIRED_WINDOW]
                what = (f"{s}: {len(tasks)} tasks wanted RUNNING, desired at most {limit_of} "
                        f"(counting calls in flight) in the last {DESIRED_WINDOW:.0f} s, maximumPercent {MAX_PERCENT}")
                if fresh:
                    violation("service above maximumPercent",
                              f"{what}; {len(fresh)} of them placed in those {DESIRED_WINDOW:.0f} s "
                              f"(revision {v.revision})")
                else:
                    note(f"above desired, none placed meanwhile: {what} (revision {v.revision})")


died = []


def guarded(f):
    def run():
        try:
            f()
        except Exception:  # noqa: BLE001 - a stream that dies ends the run (main exits)
            note(f"stream {f.__name__} died: {traceback.format_exc()}")
            count("stream-died", f.__name__)
            died.append(f.__name__)
    return run


def main():
    setup()
    streams = [run_stream, run_stream, stop_stream, prune_stream, scale_stream, drain_stream,
               deregister_stream, sampler]
    threads = [threading.Thread(target=guarded(f), daemon=True) for f in streams]
    for t in threads:
        t.start()
    while not stopping():
        time.sleep(1)
        if died:
            sys.exit(f"ops: stream {died[0]} died: see ops.log")
        with lock:
            snapshot = json.dumps({"counts": counts, "desired": {
                s: desired_log[s][-1][1] for s in SERVICES}}, indent=1)
        open(os.path.join(W, "ops.json"), "w").write(snapshot)
    for t in threads:
        t.join(timeout=30)
    with lock:
        final = {"counts": counts, "desired": {s: desired_log[s][-1][1] for s in SERVICES}}
    open(os.path.join(W, "ops.json"), "w").write(json.dumps(final, indent=1))


if __name__ == "__main__":
    main()
