"""The autoscaling scenario: one model of 2-pod groups (DeepSeek-R1-0528 FP8, 16 GPUs a
group) at 1 replica, then a load step, the same for each operator:

- ours: the `DeepSeekModel` with `autoscaling` (builtin provider, every default but the
  bounds and the target: 1..4 replicas, 4 queued + running requests per replica);
- LWS: the `LeaderWorkerSet` plus an `autoscaling/v2` HorizontalPodAutoscaler on its
  scale subresource (1..4, an External metric with target AverageValue 4, every
  behaviour default), fed by the external metrics adapter (metrics_adapter.py) with the
  same queue figure, summed over the group leaders.

`peers-fleet` runs the sim engines behind the pods and a closed-loop load. Once the
first group is Ready and the autoscaler reads its metrics, the load steps from 0 to
LOAD requests in flight (2 replicas' worth) and the clock runs: load step -> the
model's `spec.replicas` changed (the scale decision reaching the API server) -> every
pod of the added group Ready. Kaito's autoscaling goes through KEDA and its own scaler,
neither of which this benchmark builds (see docs/benchmarks/peers.md)."""

import json
import os
import subprocess
import time
from pathlib import Path

from cluster import HPA_CONTROLLER, IDENTITIES, bench_dir, audit_log
from measure import ProcSampler, Watcher, audit_requests, now_ms
from workloads import WORKLOADS, lws, model_name, ours

TARGET = 4
MAX = 4
LOAD = 8
PER_GROUP = 2
HOLD_S = 20  # load held after the new group is Ready: a second decision would show here


def workload(peer: str, ns: str, interval=None) -> list:
    if peer == "ours":
        m = ours(ns, 0, True)
        del m["spec"]["replicas"]
        m["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": MAX, "targetQueueDepth": TARGET}
        if interval:
            # The HPA controller's period (15 s by default), to tell the period apart
            # from the rest of the path.
            m["spec"]["autoscaling"]["intervalSeconds"] = interval
        return [m]
    if peer == "lws":
        m = lws(ns, 0, True)
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": model_name(0), "namespace": ns},
               "spec": {"scaleTargetRef": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                                           "name": model_name(0)},
                        "minReplicas": 1, "maxReplicas": MAX,
                        "metrics": [{"type": "External", "external": {
                            "metric": {"name": "dso_queue_load", "selector": {
                                "matchLabels": {"leaderworkerset.sigs.k8s.io/name": model_name(0)}}},
                            "target": {"type": "AverageValue", "averageValue": str(TARGET)}}}]}}
        return [m, hpa]
    raise ValueError(f"no autoscaling scenario for {peer}")


def metrics_flowing(k, peer: str, ns: str):
    """Whether the autoscaler reads the model's metrics (ours: MetricsAvailable=True;
    the HPA: ScalingActive=True, i.e. it fetched the external metric)."""
    if peer == "ours":
        obj = k.get_json("deepseekmodels.inference.deepseek-operator.dev", model_name(0), "-n", ns)
        want = "MetricsAvailable"
    else:
        obj = k.get_json("hpa", model_name(0), "-n", ns)
        want = "ScalingActive"
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == want and c["status"] == "True" for c in conds), conds


class Fleet:
    """The `peers-fleet` process for one model (as the cluster admin, not audited)."""

    def __init__(self, binary: Path, launcher: Path, admin_kubeconfig: str, peer: str, ns: str):
        self.out = bench_dir() / f"fleet-{peer}-{ns}.jsonl"
        self.f = open(self.out, "w")
        self.proc = subprocess.Popen([str(binary), peer, ns, model_name(0), str(launcher)],
                                     env={"KUBECONFIG": admin_kubeconfig, "PATH": "/usr/bin:/bin"},
                                     stdin=subprocess.PIPE, stdout=self.f, stderr=subprocess.DEVNULL,
                                     text=True, start_new_session=True)

    def load(self, n: int) -> None:
        self.proc.stdin.write(f"load {n}\n")
        self.proc.stdin.flush()

    def events(self) -> list:
        self.f.flush()
        out = []
        for line in self.out.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.terminate()
            self.proc.wait()
        self.f.close()


def new_group_ready(events: list, label: str, t_step: int, groups: int):
    """When every pod of GROUPS groups created after t_step was Ready (ms), or None."""
    seen, ready = {}, {}
    for e in events:
        if e["event"] == "seen" and e["t"] > t_step and (e.get("labels") or {}).get(label) == model_name(0):
            seen[e["uid"]] = e["t"]
        elif e["event"] == "ready" and e.get("uid") in seen:
            ready.setdefault(e["uid"], e["t"])
    need = groups * PER_GROUP
    times = sorted(ready.values())
    return times[need - 1] if len(times) >= need else None


def run_autoscale(k, peer, proc_pid, watch_bin, wkc, fleet_bin, launcher, admin_kc, rep, results, log, session,
                  interval=None):
    ns = f"b-autoscale{interval or ''}-r{rep}"
    k.run("create", "namespace", ns)
    _, label = WORKLOADS[peer]
    sampler = ProcSampler(proc_pid)
    w = Watcher(watch_bin, wkc, ns, bench_dir() / f"watch-{peer}-{ns}.jsonl")
    fleet = Fleet(fleet_bin, launcher, admin_kc, peer, ns)
    rec = {"session": session, "loadavg": os.getloadavg()[0], "peer": peer, "scenario": "autoscale", "n": 1, "rep": rep, "load": LOAD, "target": TARGET,
           "interval_s": interval}
    try:
        t_apply = now_ms()
        k.run("create", "-f", "-", input="\n---\n".join(json.dumps(d) for d in workload(peer, ns, interval)))
        deadline = time.monotonic() + 300
        conds = []
        while time.monotonic() < deadline:
            ok, conds = metrics_flowing(k, peer, ns)
            if ok:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{peer}: the autoscaler never read the metrics: {conds}")
        rec["t_metrics_ms"] = now_ms() - t_apply
        t_step = now_ms()
        fleet.load(LOAD)
        t_decision = t_ready = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if t_decision is None:
                up = [e for e in fleet.events() if e["event"] == "replicas" and e["t"] >= t_step and e["n"] > 1]
                if up:
                    t_decision, rec["decided_replicas"] = up[0]["t"], up[0]["n"]
            if t_decision is not None:
                t_ready = new_group_ready(w.events(), label, t_step, rec["decided_replicas"] - 1)
                if t_ready is not None:
                    break
            time.sleep(0.2)
        rec["decision_ms"] = t_decision - t_step if t_decision else None
        rec["ready_ms"] = t_ready - t_step if t_ready else None
        log(f"{peer} autoscale (interval {interval or 'default'}) rep {rep}: decision {rec['decision_ms']} ms -> "
            f"{rec.get('decided_replicas')} replicas, new group Ready {rec['ready_ms']} ms after the step")
        t_end = (t_ready or now_ms()) + 2000
        time.sleep(HOLD_S)
        reps = [e["n"] for e in fleet.events() if e["event"] == "replicas" and e["t"] >= t_step]
        rec["replicas_max"] = max(reps, default=None)
        rec["replicas_end"] = reps[-1] if reps else None
        fleet.load(0)
        for who, user in (("operator", IDENTITIES[peer]), ("hpa", HPA_CONTROLLER), ("adapter", IDENTITIES["adapter"])):
            rec[f"api_{who}"] = audit_requests(audit_log(), user, t_step, t_end)
        rec["proc"] = sampler.window(t_step, t_end)
        rec["t_apply"], rec["t_step"] = t_apply, t_step
    finally:
        fleet.stop()
        sampler.stop()
        w.stop()
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    k.run("delete", "namespace", ns, "--wait=false")
    k.wait_gone("namespace", ns, 300)
