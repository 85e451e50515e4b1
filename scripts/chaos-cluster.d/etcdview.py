"""Reads the cluster's keys from etcd through its v3 JSON gateway (shared by ops.py and
check.py): one range read of a prefix, decoded into the records src/cluster/keys.rs and
records.rs lay out."""
import base64
import json
import os
import ssl
import urllib.error
import urllib.request

ROOT = "/minifargate/v1"

# etcd with client certificates and users (the cluster's default): CHAOS_ETCD_TLS is
# "CA,CERT,KEY" (the operator's bundle) and CHAOS_ETCD_USER "root:PASSWORD".
_TLS = os.environ.get("CHAOS_ETCD_TLS")
_CTX = None
if _TLS:
    _ca, _cert, _key = _TLS.split(",")
    _CTX = ssl.create_default_context(cafile=_ca)
    _CTX.load_cert_chain(_cert, _key)
_USER = os.environ.get("CHAOS_ETCD_USER")
_TOKENS = {}


def _post(endpoint, path, body, timeout):
    headers = {"content-type": "application/json"}
    if _USER:
        if endpoint not in _TOKENS:
            name, password = _USER.split(":", 1)
            auth = json.dumps({"name": name, "password": password}).encode()
            req = urllib.request.Request(endpoint + "/v3/auth/authenticate", data=auth,
                                         headers=headers)
            with urllib.request.urlopen(req, timeout=timeout, context=_CTX) as r:
                _TOKENS[endpoint] = json.load(r)["token"]
        headers["authorization"] = _TOKENS[endpoint]
    req = urllib.request.Request(endpoint + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_CTX) as r:
            return json.load(r)
    except urllib.error.HTTPError:
        _TOKENS.pop(endpoint, None)  # a lapsed token: authenticate again next time
        raise


def _b64(s):
    return base64.b64encode(s.encode()).decode()


def prefix_end(p):
    b = bytearray(p.encode())
    b[-1] += 1
    return base64.b64encode(bytes(b)).decode()


def range_prefix(endpoints, prefix, timeout=5):
    """[(key, value bytes, mod_revision)] under prefix, and the revision read at."""
    body = json.dumps({"key": _b64(prefix), "range_end": prefix_end(prefix)}).encode()
    last = None
    for e in endpoints:
        try:
            v = _post(e, "/v3/kv/range", body, timeout)
            kvs = [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")),
                    int(kv.get("mod_revision", 0))) for kv in v.get("kvs", [])]
            return kvs, int(v["header"]["revision"])
        except Exception as ex:  # noqa: BLE001 - any failure: the next member
            last = ex
    raise RuntimeError(f"no etcd member answered a range of {prefix}: {last}")


class View:
    """One cluster's keys at one revision."""

    def __init__(self, endpoints, cluster="default"):
        base = f"{ROOT}/clusters/{cluster}/"
        kvs, self.revision = range_prefix(endpoints, base)
        self.instances, self.alive, self.status = {}, set(), {}
        self.ledgers, self.assignments, self.records = {}, {}, {}
        self.undecodable = []
        for key, raw, _ in kvs:
            kind, _, rest = key[len(base):].partition("/")
            try:
                if kind == "instances":
                    self.instances[rest] = json.loads(raw)
                elif kind == "alive":
                    self.alive.add(rest)
                elif kind == "status":
                    self.status[rest] = raw.decode()
                elif kind == "ledger":
                    self.ledgers[rest] = json.loads(raw).get("tasks", {})
                elif kind == "assignments":
                    inst, _, task = rest.partition("/")
                    self.assignments.setdefault(task, {})[inst] = json.loads(raw)
                elif kind == "tasks":
                    self.records[rest] = json.loads(raw)
            except ValueError as ex:
                self.undecodable.append(f"{key}: {ex}")

    def service_tasks(self, service):
        """The service's tasks the scheduler wants: an assignment wanted RUNNING (StopTask
        and the scheduler set it STOPPED at once; the record follows when the box
        reports) whose record is not STOPPED."""
        out = []
        for tid, insts in self.assignments.items():
            for a in insts.values():
                if a.get("request", {}).get("group") == f"service:{service}" \
                        and str(a.get("desiredStatus", "")).upper() == "RUNNING" \
                        and self.records.get(tid, {}).get("task", {}).get("lastStatus") != "STOPPED":
                    out.append(tid)
                    break
        return out

    def created_at(self, tid):
        """The task's createdAt (epoch seconds), 0 if unknown."""
        try:
            return float(self.records.get(tid, {}).get("task", {}).get("createdAt") or 0)
        except (TypeError, ValueError):
            return 0.0


def desired_counts(endpoints, cluster="default"):
    """{service name: desiredCount} as the control plane's rows in etcd have them (the
    truth, whichever serve answered)."""
    kvs, _ = range_prefix(endpoints, f"{ROOT}/db/rows/services/")
    out = {}
    for _, raw, _ in kvs:
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if row.get("cluster") == cluster:
            out[row.get("name")] = row.get("desired_count")
    return out
