"""Each operator under test, run out of cluster as its own static-token identity, with
its own RBAC (from its chart or config, bound to that user instead of a
ServiceAccount), metrics and health on 127.0.0.1, and webhooks either off (Kaito) or
served on 127.0.0.1 with a self-signed certificate (LWS, whose pod webhook its
controllers depend on)."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from cluster import IDENTITIES, REPO, TARGET, bench_dir, kubeconfig_for

CACHE = Path(os.environ.get("DSO_CACHE", Path.home() / ".cache" / "deepseek-operator"))


def versions() -> dict:
    v = {}
    for line in (REPO / "bench" / "peers" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, val = line.split("=", 1)
            v[k] = val
    return v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path, ctx=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}); log {log}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s; log {log}")


def wait_established(k, crd: str, timeout: float = 60) -> None:
    """Polls until the CRD is Established (kubectl wait fails on a CRD with no status yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conds = (k.get_json(f"crd/{crd}").get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            return
        time.sleep(0.2)
    raise RuntimeError(f"CRD {crd} not Established after {timeout}s")


def bind_to_user(docs: list, user: str, drop_resources=()) -> list:
    """The peer's own Roles/ClusterRoles, their bindings pointed at USER."""
    out = []
    for d in docs:
        if not d:
            continue
        kind = d.get("kind")
        if kind in ("ClusterRole", "Role"):
            for r in d.get("rules") or []:
                r["resources"] = [x for x in r.get("resources", []) if x not in drop_resources]
            d["rules"] = [r for r in d.get("rules") or [] if r.get("resources") or r.get("nonResourceURLs")]
            out.append(d)
        elif kind in ("ClusterRoleBinding", "RoleBinding"):
            d["subjects"] = [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
            out.append(d)
    return out


def helm_template(bin_dir: str, chart: Path, namespace: str, *show: str, sets=()) -> list:
    args = [str(Path(bin_dir) / "helm"), "template", "bench", str(chart), "--namespace", namespace,
            "--kube-version", "1.35.4"]
    for s in show:
        args += ["--show-only", s]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def watcher_rbac() -> list:
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "bench-watcher"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
             "subjects": [{"kind": "User", "name": IDENTITIES["watcher"], "apiGroup": "rbac.authorization.k8s.io"}]}]


class Peer:
    """A started operator process."""
    name = ""

    def __init__(self, kubectl, env: dict, api_port: str):
        self.k = kubectl
        self.env = env
        self.api_port = api_port
        self.proc = None
        self.log = bench_dir() / f"{self.name}.log"
        self.kubeconfig = kubeconfig_for(self.name, api_port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def spawn(self, args: list, extra_env: dict) -> None:
        env = dict(os.environ)
        env.update(extra_env)
        env["KUBECONFIG"] = str(self.kubeconfig)
        f = open(self.log, "a")
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid


def chart_leader_args(bin_dir: str, namespace: str) -> tuple:
    """(replicas, lease flags) of our chart's Deployment with its default values, rendered
    for NAMESPACE: what a default `helm install` runs."""
    dep = next(d for d in helm_template(bin_dir, REPO / "charts" / "deepseek-operator", namespace,
                                        "templates/deployment.yaml") if d.get("kind") == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    return dep["spec"].get("replicas", 1), [a for a in args if a.startswith(("--leader-election", "--lease-"))]


class Ours(Peer):
    name = "ours"
    version = "this repository"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.standbys = []

    def start(self, release: bool) -> None:
        self.k.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        wait_established(self.k, "deepseekmodels.inference.deepseek-operator.dev")
        # RBAC from the chart (its lease Role in the release namespace "default" included).
        self.k.apply(bind_to_user(helm_template(self.env["BIN"], REPO / "charts" / "deepseek-operator", "default",
                                                "templates/rbac.yaml"), IDENTITIES["ours"]))
        binary = TARGET / ("release" if release else "debug") / "deepseek-operator"
        self.version = f"this repository ({'release' if release else 'debug'} build)"
        # As the chart's defaults run it (issue 26): its replicas, each with leader election
        # and the chart's lease name and duration, identity from POD_NAME as the chart sets
        # it; metrics and health on 127.0.0.1. The first replica is the leader (its pid is
        # the one measured); the others stand by, and their requests (a Lease read every
        # renew period) count for ours too, as they would in a cluster.
        replicas, lease_args = chart_leader_args(self.env["BIN"], "default")
        self.lease_args = lease_args
        self.replicas = replicas
        for i in range(max(1, replicas)):
            port = free_port()
            env = {"RUST_LOG": "info,kube=warn", "POD_NAME": f"bench-deepseek-operator-{i}"}
            args = [str(binary), "run", "--metrics-bind", f"127.0.0.1:{port}"] + lease_args
            if i == 0:
                self.spawn(args, env)
                wait_http(f"http://127.0.0.1:{port}/readyz", 90, self.proc, self.log)
                # A replica with leader election is ready at once; the leader reconciles
                # once it holds the lease and has listed the cluster.
                deadline = time.monotonic() + 90
                while "watching models" not in self.log.read_text():
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(f"ours did not take the leader lease; log {self.log}")
                    time.sleep(0.2)
            else:
                leader, self.proc = self.proc, None
                self.log, leader_log = bench_dir() / f"{self.name}-standby-{i}.log", self.log
                self.spawn(args, env)
                wait_http(f"http://127.0.0.1:{port}/readyz", 90, self.proc, self.log)
                self.standbys.append(self.proc)
                self.proc, self.log = leader, leader_log
        if lease_args:
            self.version += f", {replicas} replicas, " + " ".join(lease_args)

    def stop(self) -> None:
        leader = self.proc
        for p in self.standbys:
            self.proc = p
            super().stop()
        self.proc = leader
        super().stop()


class Lws(Peer):
    name = "lws"

    def start(self) -> None:
        v = versions()["LWS_VERSION"]
        self.version = f"sigs.k8s.io/lws {v}"
        d = CACHE / f"lws-{v}"
        moddir = Path(subprocess.run(["go", "env", "GOMODCACHE"], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()) / f"sigs.k8s.io/lws@{v}"
        for f in sorted((d / "crds").glob("*.yaml")):
            self.k.run("apply", "--server-side", "--force-conflicts", "-f", str(f))
        wait_established(self.k, "leaderworkersets.leaderworkerset.x-k8s.io")
        self.k.run("create", "namespace", "lws-system")
        docs = []
        for f in ("role.yaml", "leader_election_role.yaml", "role_binding.yaml", "leader_election_role_binding.yaml"):
            for doc in yaml.safe_load_all((moddir / "config" / "rbac" / f).read_text()):
                # kustomize puts the namespaced objects in the release namespace.
                if doc and doc.get("kind") in ("Role", "RoleBinding"):
                    doc["metadata"]["namespace"] = "lws-system"
                docs.append(doc)
        self.k.apply(bind_to_user(docs, IDENTITIES["lws"]))
        # Webhook serving certificate for 127.0.0.1, from a throwaway CA.
        cert_dir = bench_dir() / "lws-certs"
        cert_dir.mkdir(exist_ok=True)
        ca_key, ca_crt = cert_dir / "ca.key", cert_dir / "ca.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-days", "30", "-subj", "/CN=bench-lws-webhook-ca", "-keyout", str(ca_key), "-out", str(ca_crt),
                        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-subj", "/CN=127.0.0.1", "-keyout", str(cert_dir / "tls.key"), "-out", str(cert_dir / "tls.csr")],
                       check=True, capture_output=True)
        ext = cert_dir / "ext.cnf"
        ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
        subprocess.run(["openssl", "x509", "-req", "-in", str(cert_dir / "tls.csr"), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                        "-CAcreateserial", "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(cert_dir / "tls.crt")],
                       check=True, capture_output=True)
        import base64
        ca_b64 = base64.b64encode(ca_crt.read_bytes()).decode()
        wh_port, m_port, h_port = free_port(), free_port(), free_port()
        webhooks = [d for d in yaml.safe_load_all((moddir / "config" / "webhook" / "manifests.yaml").read_text()) if d]
        for w in webhooks:
            w["metadata"]["name"] = "lws-" + w["metadata"]["name"]
            for h in w["webhooks"]:
                path = h["clientConfig"]["service"]["path"]
                h["clientConfig"] = {"url": f"https://127.0.0.1:{wh_port}{path}", "caBundle": ca_b64}
        cfg = bench_dir() / "lws-config.yaml"
        # LWS's own defaults (config/manager/controller_manager_config.yaml: leader election
        # on) except: the certificate comes from this runner (internal cert management
        # would need an in-cluster Service), and every listener binds 127.0.0.1.
        cfg.write_text(yaml.safe_dump({
            "apiVersion": "config.lws.x-k8s.io/v1alpha1", "kind": "Configuration",
            "leaderElection": {"leaderElect": True},
            "internalCertManagement": {"enable": False},
            "webhook": {"host": "127.0.0.1", "port": wh_port, "certDir": str(cert_dir)},
            "metrics": {"bindAddress": f"127.0.0.1:{m_port}"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{h_port}"},
        }))
        self.spawn([str(d / "bin" / "lws-manager"), f"--config={cfg}"], {})
        wait_http(f"http://127.0.0.1:{h_port}/readyz", 120, self.proc, self.log)
        # Register the webhooks only once they are served: they fail closed on every pod.
        import ssl
        ctx = ssl.create_default_context(cafile=str(ca_crt))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", wh_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        self.k.apply(webhooks)
        # Its controllers run only on the leader: wait until it holds the lease.
        deadline = time.monotonic() + 60
        while "successfully acquired lease" not in self.log.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"LWS did not acquire its leader lease; log {self.log}")
            time.sleep(0.2)


class Kaito(Peer):
    name = "kaito"

    def start(self) -> None:
        v = versions()["KAITO_VERSION"]
        self.version = f"github.com/kaito-project/kaito {v} (cmd/workspace)"
        d = CACHE / f"kaito-{v}"
        moddir = Path((d / "module-dir").read_text().strip())
        for f in sorted((d / "crds").glob("*.yaml")):
            self.k.run("apply", "--server-side", "--force-conflicts", "-f", str(f))
        wait_established(self.k, "workspaces.kaito.sh")
        ns = "kaito-workspace"
        self.k.run("create", "namespace", ns)
        chart = moddir / "charts" / "kaito" / "workspace"
        rbac = []
        for f in sorted((chart / "templates").glob("*.yaml")):
            if f.name.endswith(("role.yaml", "role_binding.yaml")):
                # A template whose condition is off renders nothing, which helm reports as an error.
                try:
                    rbac += helm_template(self.env["BIN"], chart, ns, f"templates/{f.name}")
                except subprocess.CalledProcessError:
                    pass
        # pods/log is dropped: Kaito reads pod logs only for its post-load benchmark,
        # which every Workspace here turns off, and a log read would make the API server
        # dial a simulated node.
        self.k.apply(bind_to_user(rbac, IDENTITIES["kaito"], drop_resources=("pods/log",)))
        self.k.apply(helm_template(self.env["BIN"], chart, ns, "templates/inference-params.yaml"))
        m_port, h_port = free_port(), free_port()
        # The chart's arguments and environment, except: webhooks off (they need an
        # in-cluster Service; Kaito's Workspace defaulting is empty, so only validation is
        # lost), bring-your-own nodes instead of Azure's GPU provisioner (no cloud here),
        # listeners on 127.0.0.1.
        self.spawn([str(d / "bin" / "kaito-workspace"),
                    "--feature-gates=vLLM=true,disableNodeAutoProvisioning=true,gatewayAPIInferenceExtension=false",
                    "--node-provisioner=byo", "--webhook=false",
                    f"--metrics-bind-address=127.0.0.1:{m_port}", f"--health-probe-bind-address=127.0.0.1:{h_port}"],
                   {"RELEASE_NAMESPACE": ns, "SYSTEM_NAMESPACE": ns, "PRESET_REGISTRY_NAME": "mcr.microsoft.com/aks/kaito",
                    "CLOUD_PROVIDER": "azure", "CLUSTER_NAME": "kaito"})
        wait_http(f"http://127.0.0.1:{h_port}/readyz", 120, self.proc, self.log)
