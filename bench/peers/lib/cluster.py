"""A fresh local control plane per peer (e2e/cluster, topology `peers`), with the
benchmark's identities (static tokens) and an audit log of every request those
identities make. Nothing here changes e2e/cluster: the token file and the audit policy
reach kube-apiserver through DSO_APISERVER_EXTRA_ARGS."""

import json
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "e2e" / "cluster"
# Where cargo put this workspace's binaries: CARGO_TARGET_DIR when set, as cargo does.
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
if not TARGET.is_absolute():
    TARGET = REPO / TARGET

# One user per operator under test; the watcher and runner are left out of the audit log.
IDENTITIES = {
    "ours": "bench:deepseek-operator",
    "lws": "bench:lws-manager",
    "kaito": "bench:kaito-workspace",
    "watcher": "bench:watcher",
    # The external metrics adapter of the autoscaling scenario (lists leader pods for the HPA).
    "adapter": "bench:metrics-adapter",
}

# The controller manager's StatefulSet controller creates the pods of LWS's and Kaito's
# StatefulSets: its requests are logged too, so the pod writes a peer causes can be
# counted next to the pod writes we make ourselves.
STS_CONTROLLER = "system:serviceaccount:kube-system:statefulset-controller"
# The HPA controller (in the controller manager) that scales the LeaderWorkerSet in the
# autoscaling scenario: its requests are part of that path's cost.
HPA_CONTROLLER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


def state_dir() -> Path:
    d = os.environ.get("DSO_CLUSTER_DIR")
    if not d:
        raise SystemExit("DSO_CLUSTER_DIR is not set: source your cluster variables first")
    return Path(d)


def bench_dir() -> Path:
    d = state_dir().parent / (state_dir().name + "-bench")
    d.mkdir(parents=True, exist_ok=True)
    return d


def audit_log() -> Path:
    return state_dir() / "logs" / "bench-audit.log"


def _write_auth_files() -> tuple[Path, Path]:
    d = bench_dir()
    tokens = d / "tokens.csv"
    # Tokens are local to this throwaway cluster; a fixed value keeps kubeconfigs stable.
    tokens.write_text("".join(f"bench-{k}-token,{u},{u},\"bench\"\n" for k, u in IDENTITIES.items()))
    tokens.chmod(0o600)
    policy = d / "audit-policy.yaml"
    users = [u for k, u in IDENTITIES.items() if k != "watcher"] + [STS_CONTROLLER, HPA_CONTROLLER]
    policy.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
        f"  - level: Metadata\n    users: {json.dumps(users)}\n  - level: None\n")
    return tokens, policy


def down() -> None:
    subprocess.run([str(CLUSTER), "down"], check=True, stdout=subprocess.DEVNULL)


def up() -> dict:
    """Stops any cluster in DSO_CLUSTER_DIR, starts a fresh one, returns its environment."""
    down()
    tokens, policy = _write_auth_files()
    log = audit_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        log.unlink()
    env = dict(os.environ)
    env["DSO_APISERVER_EXTRA_ARGS"] = " ".join([
        env.get("DSO_APISERVER_EXTRA_ARGS", ""), f"--token-auth-file={tokens}",
        f"--audit-policy-file={policy}", f"--audit-log-path={log}",
        "--audit-log-maxsize=2000", "--audit-log-maxbackup=1", "--audit-log-mode=blocking"]).strip()
    out = subprocess.run([str(CLUSTER), "up", "--topology", "peers"], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith("export KUBECONFIG="):
            res["KUBECONFIG"] = line.split("=", 1)[1]
        elif line.startswith("export PATH="):
            res["BIN"] = line.split("=", 1)[1].split(":", 1)[0]
    return res


def kubeconfig_for(who: str, api_port: str) -> Path:
    """A kubeconfig that authenticates as the benchmark identity WHO (static token)."""
    pki = state_dir() / "pki"
    path = bench_dir() / f"{who}.kubeconfig"
    ca = (pki / "ca.crt").read_text()
    import base64
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "bench", "cluster": {
            "server": f"https://127.0.0.1:{api_port}",
            "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
        "users": [{"name": who, "user": {"token": f"bench-{who}-token"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": who}}],
        "current-context": "bench",
    }
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


class Kubectl:
    """kubectl as the cluster admin (the runner's own identity, not audited)."""

    def __init__(self, env: dict):
        self.bin = Path(env["BIN"]) / "kubectl"
        self.kubeconfig = env["KUBECONFIG"]

    def run(self, *args, input=None, check=True) -> str:
        r = subprocess.run([str(self.bin), f"--kubeconfig={self.kubeconfig}", *args], input=input,
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def apply(self, docs: list, server_side=True) -> None:
        text = "\n---\n".join(json.dumps(d) for d in docs)
        args = ["apply", "-f", "-"] + (["--server-side", "--force-conflicts"] if server_side else [])
        self.run(*args, input=text)

    def get_json(self, *args) -> dict:
        return json.loads(self.run("get", "-o", "json", *args))

    def wait_gone(self, kind: str, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("get", kind, name, "--ignore-not-found", "-o", "name").strip():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{kind}/{name} still present after {timeout}s")
