#!/usr/bin/env python3
"""Simulated-node topologies for the e2e cluster.

Reads a topology YAML (format documented in e2e/topologies/mixed.yaml), turns it
into KWOK-managed Node objects and applies them straight to the API server over
HTTPS with the admin client certificate (one process, a few threads: fast enough
for thousands of nodes), then waits until every node is Ready.

  topology.py render FILE                 print the Node objects as JSON
  topology.py apply FILE --server URL --ca CA --cert CERT --key KEY [--timeout S]

Every address it hands out is in 127.0.0.0/8 (node InternalIPs: 127.3.x.y).
Progress goes to stderr; nothing is printed on stdout by `apply`.
"""

import argparse
import hashlib
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from decimal import Decimal
from concurrent.futures import ThreadPoolExecutor

try:
    import yaml
except ImportError:  # pragma: no cover - environment check
    sys.exit("topology.py: PyYAML is required (python3 -m pip install pyyaml)")

MANAGED_LABEL = "e2e.deepseek.ai/managed"
POOL_LABEL = "e2e.deepseek.ai/pool"
TOPOLOGY_LABEL = "e2e.deepseek.ai/topology"
HASH_ANNOTATION = "e2e.deepseek.ai/spec-hash"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
NODE_IP_BASE = (127, 3)
KUBELET_VERSION = os.environ.get("DSO_KUBELET_VERSION") or "v0.0.0-kwok"


def log(msg):
    print(f"[topology {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def node_ip(index):
    """The index-th simulated node address: 127.3.0.1, 127.3.0.2, ... (250 per /24)."""
    hi, lo = divmod(index, 250)
    if hi > 255:
        raise ValueError("too many nodes for 127.3.0.0/16")
    return f"{NODE_IP_BASE[0]}.{NODE_IP_BASE[1]}.{hi}.{lo + 1}"


def expand_pools(topo):
    """Yields concrete pools (zones and scale applied)."""
    defaults = topo.get("defaults") or {}
    zones = topo.get("zones") or [None]
    scale = float(os.environ.get("DSO_TOPOLOGY_SCALE") or topo.get("scale") or 1)
    for zone in zones:
        for pool in topo.get("pools") or []:
            if "name" not in pool:
                raise ValueError(f"pool without a name: {pool}")
            count = int(pool.get("count", 1))
            if scale != 1:
                count = max(1, int(round(count * scale)))
            name = pool["name"] if zone is None else f"{pool['name']}-{zone}"
            labels = dict(defaults.get("labels") or {})
            labels.update(pool.get("labels") or {})
            if zone is not None:
                labels["topology.kubernetes.io/zone"] = zone
            capacity = {k: str(v) for k, v in (defaults.get("capacity") or {}).items()}
            capacity.update({k: str(v) for k, v in (pool.get("capacity") or {}).items()})
            allocatable = dict(capacity)
            allocatable.update({k: str(v) for k, v in (pool.get("allocatable") or {}).items()})
            yield {
                "name": name,
                "count": count,
                "arch": pool.get("arch") or defaults.get("arch") or "amd64",
                "labels": {k: str(v) for k, v in labels.items()},
                "taints": list(pool.get("taints") or []) + list(defaults.get("taints") or []),
                "capacity": capacity,
                "allocatable": allocatable,
            }


def build_nodes(topo):
    """Returns a list of (node object without status, status) pairs."""
    topo_name = str(topo.get("name") or "unnamed")
    nodes, index, seen = [], 0, set()
    for pool in expand_pools(topo):
        for i in range(pool["count"]):
            name = f"{pool['name']}-{i}"
            if name in seen:
                raise ValueError(f"duplicate node name {name}")
            seen.add(name)
            labels = dict(pool["labels"])
            labels.update({
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": pool["arch"],
                MANAGED_LABEL: "true",
                POOL_LABEL: pool["name"],
                TOPOLOGY_LABEL: topo_name,
            })
            taints = [
                {k: str(t[k]) for k in ("key", "value", "effect") if k in t}
                for t in pool["taints"]
            ]
            ip = node_ip(index)
            index += 1
            status = {
                "capacity": pool["capacity"],
                "allocatable": pool["allocatable"],
                "addresses": [
                    {"type": "InternalIP", "address": ip},
                    {"type": "Hostname", "address": name},
                ],
                "nodeInfo": {
                    "architecture": pool["arch"],
                    "operatingSystem": "linux",
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "containerRuntimeVersion": "kwok",
                    "kernelVersion": "kwok",
                    "osImage": "kwok simulated node",
                    "machineID": "", "systemUUID": "", "bootID": "",
                },
            }
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": {
                        KWOK_ANNOTATION: "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                },
                "spec": {"taints": taints} if taints else {},
            }
            digest = hashlib.sha256(
                json.dumps([node, status], sort_keys=True).encode()).hexdigest()[:16]
            node["metadata"]["annotations"][HASH_ANNOTATION] = digest
            nodes.append((node, status))
    return nodes


class Api:
    """A tiny HTTPS client for the API server (one connection per thread)."""

    def __init__(self, server, ca, cert, key):
        u = urllib.parse.urlparse(server)
        self.host, self.port = u.hostname, u.port or 443
        if not self.host.startswith("127.") and self.host != "localhost":
            raise ValueError(f"refusing non-loopback API server {server}")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, content_type="application/json"):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(5):
            try:
                c = self._conn()
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                if r.status == 429 or (r.status >= 500 and attempt < 4):
                    time.sleep(0.2 * (attempt + 1))
                    continue
                return r.status, (json.loads(raw) if raw else None)
            except (OSError, http.client.HTTPException):
                self.local.conn = None
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{method} {path}: retries exhausted")


def check(status, body, what):
    if status >= 300:
        msg = body.get("message") if isinstance(body, dict) else body
        raise RuntimeError(f"{what}: HTTP {status}: {msg}")


def apply_node(api, node, status, existing):
    """Creates or updates one node; returns whether it wrote anything."""
    name = node["metadata"]["name"]
    path = f"/api/v1/nodes/{urllib.parse.quote(name)}"
    want_hash = node["metadata"]["annotations"][HASH_ANNOTATION]
    if existing is None:
        body = dict(node)
        body["status"] = status
        s, b = api.request("POST", "/api/v1/nodes", body)
        if s == 409:
            s, b = api.request("GET", path)
            check(s, b, f"get node {name}")
            existing = b
        else:
            check(s, b, f"create node {name}")
    if existing is not None:
        have_hash = (existing["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)
        if have_hash == want_hash and status_ok(existing, status):
            return False
        labels = dict(node["metadata"]["labels"])
        for k in (existing["metadata"].get("labels") or {}):
            if k not in labels:
                labels[k] = None
        patch = {"metadata": {"labels": labels, "annotations": node["metadata"]["annotations"]},
                 "spec": {"taints": node["spec"].get("taints")}}
        s, b = api.request("PATCH", path, patch, "application/merge-patch+json")
        check(s, b, f"patch node {name}")
    patch_status(api, name, status)
    return True


def patch_status(api, name, status):
    # The API server may drop status on create, and KWOK's node-initialize stage
    # may race with us (it fills in defaults computed from the status it saw):
    # set it on the subresource, and re-check once the node is Ready.
    path = f"/api/v1/nodes/{urllib.parse.quote(name)}/status"
    s, b = api.request("PATCH", path, {"status": status}, "application/merge-patch+json")
    check(s, b, f"patch status of node {name}")


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def quantity(q):
    """A Kubernetes quantity as a Decimal (enough of the grammar for node capacities)."""
    q = str(q).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and q.endswith(suffix):
            return Decimal(q[: -len(suffix)]) * _SUFFIX[suffix]
    return Decimal(q)


def status_ok(node, want):
    """Whether the node's status carries the capacity, allocatable, addresses and
    node info we set."""
    st = node.get("status") or {}
    for field in ("capacity", "allocatable"):
        have = st.get(field) or {}
        for k, v in want[field].items():
            try:
                if k not in have or quantity(have[k]) != quantity(v):
                    return False
            except ArithmeticError:
                return False
    addrs = {(a.get("type"), a.get("address")) for a in st.get("addresses") or []}
    if addrs != {(a["type"], a["address"]) for a in want["addresses"]}:
        return False
    info = st.get("nodeInfo") or {}
    return info.get("kubeletVersion") == want["nodeInfo"]["kubeletVersion"]


def list_managed(api):
    sel = urllib.parse.quote(f"{MANAGED_LABEL}=true")
    s, b = api.request("GET", f"/api/v1/nodes?labelSelector={sel}")
    check(s, b, "list nodes")
    return {n["metadata"]["name"]: n for n in b.get("items") or []}


def is_ready(node):
    st = node.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in st.get("conditions") or [])


def cmd_apply(args):
    topo = yaml.safe_load(open(args.file))
    nodes = build_nodes(topo)
    api = Api(args.server, args.ca, args.cert, args.key)
    existing = list_managed(api)
    wanted = {n["metadata"]["name"] for n, _ in nodes}
    stale = [name for name in existing if name not in wanted]
    log(f"topology {topo.get('name')}: {len(nodes)} nodes "
        f"({len(existing)} already present, {len(stale)} to remove)")
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        changed = sum(pool.map(lambda ns: apply_node(api, ns[0], ns[1], existing.get(ns[0]["metadata"]["name"])), nodes))
        for name in stale:
            s, b = api.request("DELETE", f"/api/v1/nodes/{urllib.parse.quote(name)}")
            if s != 404:
                check(s, b, f"delete node {name}")
    log(f"{changed} nodes created or updated; waiting for all to be Ready")
    expected = {n["metadata"]["name"]: st for n, st in nodes}
    if args.timeout is None:
        args.timeout = 120 + 0.1 * len(nodes)
    deadline = time.monotonic() + args.timeout
    delay, repatched = 0.2, 0
    while True:
        current = list_managed(api)
        not_ready, wrong = [], []
        for name, st in expected.items():
            if name not in current or not is_ready(current[name]):
                not_ready.append(name)
            elif not status_ok(current[name], st):
                wrong.append(name)
        if wrong:
            # KWOK initialised these from a status older than ours; now that they
            # are Ready it will not initialise them again.
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                list(pool.map(lambda n: patch_status(api, n, expected[n]), wrong))
            repatched += len(wrong)
        if not not_ready and not wrong:
            log(f"all {len(expected)} nodes Ready" +
                (f" ({repatched} status re-patches after KWOK's initialisation)" if repatched else ""))
            return 0
        if time.monotonic() > deadline:
            log(f"TIMEOUT after {args.timeout}s: {len(not_ready)} nodes not Ready "
                f"({', '.join(sorted(not_ready)[:5])}), {len(wrong)} with a wrong status "
                f"({', '.join(sorted(wrong)[:5])}); is the kwok controller running? see its log")
            return 1
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("file")
    a = sub.add_parser("apply")
    a.add_argument("file")
    a.add_argument("--server", required=True)
    a.add_argument("--ca", required=True)
    a.add_argument("--cert", required=True)
    a.add_argument("--key", required=True)
    a.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for Ready nodes (default 120 + 0.1 per node)")
    a.add_argument("--workers", type=int, default=6)
    args = p.parse_args()
    if args.cmd == "render":
        topo = yaml.safe_load(open(args.file))
        out = []
        for node, status in build_nodes(topo):
            n = dict(node)
            n["status"] = status
            out.append(n)
        json.dump({"apiVersion": "v1", "kind": "List", "items": out}, sys.stdout, indent=1)
        print()
        return 0
    try:
        return cmd_apply(args)
    except (RuntimeError, OSError, ValueError) as e:
        log(f"FAILED: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
