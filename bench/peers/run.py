#!/usr/bin/env python3
"""Runner of the peer benchmark (see README.md): for each operator, a fresh control
plane, the operator started as its own identity, then every scenario and repetition in
its own namespace, each measured by the watcher, the audit log and /proc. Results are
appended as JSON lines to --out; report.py turns them into docs/benchmarks/peers.md."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

from cluster import IDENTITIES, REPO, STS_CONTROLLER, TARGET, Kubectl, audit_log, bench_dir, kubeconfig_for, up, down  # noqa: E402
from measure import ProcSampler, Watcher, audit_requests, now_ms  # noqa: E402
from peers import Kaito, Lws, Ours, watcher_rbac  # noqa: E402
from autoscale import run_autoscale  # noqa: E402
from metrics_adapter import Adapter, wait_available  # noqa: E402
from workloads import KINDS, WORKLOADS, model_name  # noqa: E402

GPU_NODES = 16


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pod_table(events: list, label: str) -> dict:
    """uid -> {model, seen, bound, ready, deleted} from the watcher's events."""
    pods = {}
    for e in events:
        if e["event"] in ("watching", "watch-error"):
            continue
        p = pods.setdefault(e["uid"], {"pod": e["pod"]})
        if e["event"] == "seen":
            p["model"] = (e.get("labels") or {}).get(label)
        p.setdefault(e["event"], e["t"])
    return pods


def model_times(pods: dict, per_model: int) -> dict:
    """model -> (seen, bound, ready): the first pod seen, and the moment the model's
    last needed pod was bound / Ready (None if it never was)."""
    by = {}
    for p in pods.values():
        if p.get("model"):
            by.setdefault(p["model"], []).append(p)
    out = {}
    for m, ps in by.items():
        seen = min(p["seen"] for p in ps)
        bound = sorted(p["bound"] for p in ps if "bound" in p)
        ready = sorted(p["ready"] for p in ps if "ready" in p)
        out[m] = {"seen": seen, "bound": bound[per_model - 1] if len(bound) >= per_model else None,
                  "ready": ready[per_model - 1] if len(ready) >= per_model else None}
    return out


def group_ready_again(events: list, label: str, model: str, per_model: int, t_del: int, settle_ms: int):
    """When MODEL was last whole again after t_del: the last moment its live pods became
    exactly PER_MODEL, all Ready, one of them created after t_del; counted only once no
    event about its pods has arrived for SETTLE_MS (an operator that recreates the whole
    group deletes the surviving ranks after the replacement may already be Ready)."""
    live, last_whole, last_event, whole = {}, None, None, False
    for e in events:
        if e["event"] in ("watching", "watch-error"):
            continue
        if e["event"] == "seen":
            if (e.get("labels") or {}).get(label) != model:
                continue
            live[e["uid"]] = {"seen": e["t"], "ready": False}
        elif e["uid"] not in live:
            continue
        elif e["event"] == "ready":
            live[e["uid"]]["ready"] = True
        elif e["event"] == "deleted":
            del live[e["uid"]]
        if e["t"] <= t_del:
            continue
        last_event = e["t"]
        now_whole = len(live) == per_model and all(p["ready"] for p in live.values()) \
            and any(p["seen"] > t_del for p in live.values())
        if now_whole and not whole:
            last_whole = e["t"]
        whole = now_whole
    if whole and last_event is not None and now_ms() - last_event >= settle_ms:
        return last_whole
    return None


def unplaced_report(k: Kubectl, peer: str, ns: str, models: list) -> dict:
    out = {}
    events = k.get_json("events", "-n", ns).get("items", [])
    for m in models:
        obj = k.get_json(KINDS[peer], m, "-n", ns)
        evs = [f"{e.get('type')} {e.get('reason')}: {e.get('message')} ({e.get('involvedObject', {}).get('kind')}/"
               f"{e.get('involvedObject', {}).get('name')}, x{e.get('count') or 1})"
               for e in events if e.get("involvedObject", {}).get("name", "").startswith(m)]
        out[m] = {"status": obj.get("status"), "events": evs}
    return out


def run_one(k, peer, proc_pid, watch_bin, wkc, scenario, n, rep, steady_s, results, session, recovery_delay=0,
            standby_pids=()):
    group = scenario == "group"
    per_model = 2 if group else 1
    ns = f"b-{scenario}{n}-r{rep}"
    k.run("create", "namespace", ns)
    build, label = WORKLOADS[peer]
    docs = [build(ns, i, group) for i in range(n)]
    sampler = ProcSampler(proc_pid)
    # Our standby replicas (the chart's defaults run 2): sampled apart from the leader.
    standby_samplers = [ProcSampler(pid) for pid in standby_pids]
    w = Watcher(watch_bin, wkc, ns, bench_dir() / f"watch-{peer}-{ns}.jsonl")
    time.sleep(1)
    t_apply = now_ms()
    k.run("create", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    expect = min(n, GPU_NODES // per_model)
    deadline = time.monotonic() + 300
    while True:
        times = model_times(pod_table(w.events(), label), per_model)
        ready = [m for m, t in times.items() if t["ready"]]
        if len(ready) >= expect or time.monotonic() > deadline:
            break
        if os.waitpid(proc_pid, os.WNOHANG) != (0, 0):
            raise RuntimeError(f"{peer} exited during the run")
        time.sleep(0.2)
    t_done = max([times[m]["ready"] for m in ready], default=now_ms())
    complete = len(ready) >= expect
    log(f"{peer} {scenario} N={n} rep {rep}: {len(ready)}/{n} models Ready in {t_done - t_apply} ms")
    rec = {"session": session, "loadavg": os.getloadavg()[0], "peer": peer, "scenario": scenario, "n": n, "rep": rep,
           "complete": complete,
           "models_ready": len(ready), "t_apply": t_apply, "t_done": t_done,
           "models": {m: {kk: (v - t_apply if v else None) for kk, v in t.items()} for m, t in times.items()}}
    t_burst_end = t_done + 2000
    if n > expect:
        time.sleep(30)  # let status and Events about the unplaceable models settle
        not_ready = [model_name(i) for i in range(n) if model_name(i) not in ready]
        rec["unplaced"] = unplaced_report(k, peer, ns, not_ready)
    if group:
        if recovery_delay:
            # The rank fails later in the group's life (not moments after it came up).
            time.sleep(recovery_delay)
            rec["scenario"] = "group-late"
            rec["recovery_delay_s"] = recovery_delay
        t_del = now_ms()
        pods = k.get_json("pods", "-n", ns, "-l", f"{label}={model_name(0)}")["items"]
        # The second rank: ours labels it rank 1, LWS worker-index 1; Kaito's StatefulSet
        # names it <name>-1, which also sorts last.
        def rank(p):
            lb = p["metadata"].get("labels") or {}
            return lb.get("inference.deepseek-operator.dev/rank") or lb.get("leaderworkerset.sigs.k8s.io/worker-index")
        ranked = [p["metadata"]["name"] for p in pods if rank(p) == "1"]
        victim = ranked[0] if ranked else sorted(p["metadata"]["name"] for p in pods)[-1]
        k.run("delete", "pod", "-n", ns, victim, "--wait=false")
        deadline = time.monotonic() + 300
        t_rec = None
        while time.monotonic() < deadline and t_rec is None:
            t_rec = group_ready_again(w.events(), label, model_name(0), per_model, t_del, 5000)
            time.sleep(0.2)
        rec["recovery_ms"] = (t_rec - t_del) if t_rec else None
        rec["recovery_victim"] = victim
        rec["recovery_method"] = "settled-5s"
        log(f"{peer} group recovery after deleting {victim}: {rec['recovery_ms']} ms")
        t_burst_end = now_ms() + 2000
    time.sleep(max(0, (t_burst_end - now_ms()) / 1000))
    t_steady0 = now_ms()
    time.sleep(steady_s)
    t_steady1 = now_ms()
    sampler.stop()
    for s in standby_samplers:
        s.stop()
    w.stop()
    user = IDENTITIES[peer]
    rec["api_burst"] = audit_requests(audit_log(), user, t_apply, t_burst_end)
    rec["api_steady"] = audit_requests(audit_log(), user, t_steady0, t_steady1)
    rec["api_burst_sts"] = audit_requests(audit_log(), STS_CONTROLLER, t_apply, t_burst_end)
    rec["steady_s"] = round((t_steady1 - t_steady0) / 1000, 1)
    rec["proc_burst"] = sampler.window(t_apply, t_burst_end)
    rec["proc_steady"] = sampler.window(t_steady0, t_steady1)
    if standby_samplers:
        rec["proc_standby_burst"] = [s.window(t_apply, t_burst_end) for s in standby_samplers]
        rec["proc_standby_steady"] = [s.window(t_steady0, t_steady1) for s in standby_samplers]
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    k.run("delete", "namespace", ns, "--wait=false")
    k.wait_gone("namespace", ns, 300)


def autoscale(k, env, peer, p, watch_bin, wkc, fleet_bin, launcher, api_port, a, session):
    """The autoscaling runs; for LWS, the external metrics adapter its HPA reads."""
    adapter = None
    if peer == "lws":
        k.apply([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                  "metadata": {"name": "bench-metrics-adapter"},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                  "subjects": [{"kind": "User", "name": IDENTITIES["adapter"],
                                "apiGroup": "rbac.authorization.k8s.io"}]}])
        adapter = Adapter(api_port, "bench-adapter-token")
        k.apply(adapter.registration())
        wait_available(k)
    try:
        variants = [None] + ([a.autoscale_ours_interval] if peer == "ours" and a.autoscale_ours_interval else [])
        for interval in variants:
            for rep in range(a.rep_offset, a.rep_offset + a.autoscale):
                run_autoscale(k, peer, p.pid, watch_bin, wkc, fleet_bin, launcher, env["KUBECONFIG"], rep, a.out,
                              log, session, interval)
    finally:
        if adapter:
            log(f"metrics adapter: {adapter.served} answers, {adapter.errors} errors")
            adapter.stop()


def main():
    # SIGTERM (a timeout, Ctrl-C's cousin) unwinds like an exception, so the `finally`
    # below stops the operator and the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--peers", default="ours,lws,kaito")
    ap.add_argument("--sizes", default="1,8,16,20", help="models of one 8-GPU pod")
    ap.add_argument("--groups", default="4", help="2-node groups (16 GPUs); empty: none")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steady", type=int, default=300, help="seconds of steady state measured after the --steady-at burst")
    ap.add_argument("--steady-at", default="single16", help="scenario+N whose runs are followed by --steady seconds at rest")
    ap.add_argument("--steady-reps", type=int, default=1, help="how many runs of --steady-at get the --steady window (the others 3 s)")
    ap.add_argument("--recovery-delay", default="0,20",
                    help="seconds between the groups being Ready and deleting a rank, one group scenario per value "
                         "(a value above 0 gives the results scenario group-late)")
    ap.add_argument("--autoscale", type=int, default=5, help="runs of the autoscaling scenario (ours and LWS); 0: none")
    ap.add_argument("--autoscale-ours-interval", type=int, default=15,
                    help="then as many runs of ours with this intervalSeconds (the HPA's default period); 0: none")
    ap.add_argument("--rep-offset", type=int, default=0, help="number of the first repetition (to add runs to a results file)")
    ap.add_argument("--release", action="store_true", help="our operator's release build")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks" / "peers-results.jsonl"))
    a = ap.parse_args()
    watch_bin = TARGET / "debug" / "peers-watch"
    fleet_bin = TARGET / "debug" / "peers-fleet"
    launcher = TARGET / "debug" / "deepseek-launcher"
    # Tags every result of this invocation: report.py shows, per peer and scenario, the latest session.
    session = time.strftime("%Y-%m-%dT%H:%M", time.gmtime())
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    api_port = os.environ.get("DSO_API_PORT", "36443")
    for peer in a.peers.split(","):
        log(f"{peer}: fresh control plane")
        env = up()
        k = Kubectl(env)
        k.apply(watcher_rbac())
        wkc = kubeconfig_for("watcher", api_port)
        p = {"ours": Ours, "lws": Lws, "kaito": Kaito}[peer](k, env, api_port)
        try:
            p.start(a.release) if peer == "ours" else p.start()
            with open(a.out, "a") as f:
                f.write(json.dumps({"session": session, "peer": peer, "version": p.version, "commit": commit,
                                    "started": now_ms(), "loadavg": os.getloadavg()}) + "\n")
            log(f"{peer}: {p.version} running (pid {p.pid})")
            delays = [int(d) for d in a.recovery_delay.split(",") if d]
            plan = [("single", int(n), 0) for n in a.sizes.split(",") if n] + \
                   [("group", int(n), d) for n in a.groups.split(",") if n for d in delays]
            for scenario, n, delay in plan:
                for i, rep in enumerate(range(a.rep_offset, a.rep_offset + a.reps)):
                    steady = a.steady if f"{scenario}{n}" == a.steady_at and i < a.steady_reps else 3
                    run_one(k, peer, p.pid, watch_bin, wkc, scenario, n, rep, steady, a.out, session, delay,
                            [s.pid for s in getattr(p, "standbys", [])])
            if a.autoscale and peer in ("ours", "lws"):
                autoscale(k, env, peer, p, watch_bin, wkc, fleet_bin, launcher, api_port, a, session)
        finally:
            p.stop()
            down()


if __name__ == "__main__":
    main()
