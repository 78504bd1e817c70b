"""The external metrics API the HPA reads in the autoscaling scenario: a minimal
adapter for `external.metrics.k8s.io/v1beta1`, the extension point Kubernetes documents
for HPAs on metrics from outside the cluster (what prometheus-adapter or KEDA's metrics
server serve in a real cluster). It serves one metric, `dso_queue_load`: queued +
running requests (`vllm:num_requests_waiting` + `vllm:num_requests_running`) summed over
the LeaderWorkerSet group leaders its label selector picks, read from their engines'
`/metrics` at request time: the same figure our builtin autoscaler sums over its leaders.

It listens on 127.0.0.1 with a throwaway certificate. kube-apiserver reaches it through an
APIService whose Service is of type ExternalName `127.0.0.1` (the aggregator dials an
ExternalName service's name directly; a ClusterIP service would need Endpoints, which
may not hold loopback addresses), so nothing leaves loopback. Pods are listed as the
benchmark identity `bench:metrics-adapter` (audited like the operators), engines read
only at 127.x pod IPs."""

import base64
import json
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cluster import bench_dir, state_dir

GROUP, VERSION = "external.metrics.k8s.io", "v1beta1"
METRIC = "dso_queue_load"
NAMESPACE, SERVICE = "bench-metrics", "adapter"
ENGINE_PORT = 8080  # `vllm serve --port 8080` in the LWS template
LEADERS = "leaderworkerset.sigs.k8s.io/worker-index=0"


def _certs() -> tuple[Path, Path, Path]:
    d = bench_dir() / "adapter-certs"
    d.mkdir(exist_ok=True)
    ca_key, ca_crt, key, crt = d / "ca.key", d / "ca.crt", d / "tls.key", d / "tls.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-days", "30", "-subj", "/CN=bench-metrics-adapter-ca",
                    "-keyout", str(ca_key), "-out", str(ca_crt), "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign"], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", *ec, "-subj", f"/CN={SERVICE}.{NAMESPACE}.svc",
                    "-keyout", str(key), "-out", str(d / "tls.csr")], check=True, capture_output=True)
    ext = d / "ext.cnf"
    # The aggregator verifies the name <service>.<namespace>.svc.
    ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                   f"subjectAltName=DNS:{SERVICE}.{NAMESPACE}.svc,IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(d / "tls.csr"), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(crt)],
                   check=True, capture_output=True)
    return ca_crt, crt, key


def engine_load(text: str):
    """waiting + running from vLLM's metric text; None if either is missing."""
    vals = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        for name in ("vllm:num_requests_waiting", "vllm:num_requests_running"):
            if line.startswith(name + "{") or line.startswith(name + " "):
                try:
                    vals[name] = vals.get(name, 0.0) + float(line.rsplit(None, 1)[1])
                except (IndexError, ValueError):
                    pass
    return sum(vals.values()) if len(vals) == 2 else None


class Adapter:
    def __init__(self, api_port: str, token: str):
        self.api = f"https://127.0.0.1:{api_port}"
        self.token = token
        self.api_ctx = ssl.create_default_context(cafile=str(state_dir() / "pki" / "ca.crt"))
        self.ca, crt, key = _certs()
        self.served = 0
        self.errors = 0
        adapter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_GET(self):
                code, body = adapter.handle(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()

    def registration(self) -> list:
        """The Service and APIService that route the group to this adapter."""
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
             "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": f"{VERSION}.{GROUP}"},
             "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 100, "versionPriority": 100,
                      "caBundle": base64.b64encode(self.ca.read_bytes()).decode(),
                      "service": {"namespace": NAMESPACE, "name": SERVICE, "port": self.port}}},
        ]

    def _pods(self, ns: str, selector: str) -> list:
        q = urllib.parse.urlencode({"labelSelector": selector})
        req = urllib.request.Request(f"{self.api}/api/v1/namespaces/{ns}/pods?{q}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5, context=self.api_ctx) as r:
            return json.load(r).get("items", [])

    def value(self, ns: str, selector: str):
        """The metric for the leaders SELECTOR picks in NS, or an error message."""
        total = 0.0
        for p in self._pods(ns, ",".join(s for s in (selector, LEADERS) if s)):
            st = p.get("status") or {}
            if p["metadata"].get("deletionTimestamp") or st.get("phase") != "Running":
                continue
            ip = st.get("podIP") or ""
            if not ip.startswith("127."):
                continue  # never dial anything but loopback
            url = f"http://{ip}:{ENGINE_PORT}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    v = engine_load(r.read().decode())
            except OSError as e:
                return None, f"{p['metadata']['name']}: {url}: {e}"
            if v is None:
                return None, f"{p['metadata']['name']}: {url}: no queue metrics"
            total += v
        return total, None

    def handle(self, path: str):
        u = urllib.parse.urlparse(path)
        parts = [x for x in u.path.split("/") if x]
        if parts == ["apis", GROUP, VERSION]:
            self.served += 1
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
                         "resources": [{"name": METRIC, "singularName": "", "namespaced": True,
                                        "kind": "ExternalMetricValueList", "verbs": ["get"]}]}
        if len(parts) == 6 and parts[:3] == ["apis", GROUP, VERSION] and parts[3] == "namespaces":
            ns, metric = parts[4], parts[5]
            if metric != METRIC:
                return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                             "reason": "NotFound", "message": f"no metric {metric}"}
            sel = urllib.parse.parse_qs(u.query).get("labelSelector", [""])[0]
            try:
                v, err = self.value(ns, sel)
            except OSError as e:
                v, err = None, f"listing pods: {e}"
            if err:
                self.errors += 1
                return 503, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                             "reason": "ServiceUnavailable", "message": err}
            self.served += 1
            ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return 200, {"kind": "ExternalMetricValueList", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {},
                         "items": [{"metricName": METRIC, "metricLabels": {}, "timestamp": ts,
                                    "value": f"{round(v * 1000)}m"}]}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound",
                     "message": "not served"}


def wait_available(k, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    conds = []
    while time.monotonic() < deadline:
        conds = (k.get_json(f"apiservice/{VERSION}.{GROUP}").get("status") or {}).get("conditions") or []
        if any(c["type"] == "Available" and c["status"] == "True" for c in conds):
            return
        time.sleep(0.5)
    raise RuntimeError(f"APIService {VERSION}.{GROUP} not Available after {timeout}s: {conds}")
