#!/usr/bin/env python3
"""Turns the runner's JSON lines into docs/benchmarks/peers.md: the tables (medians and
ranges over repetitions, each figure also as a ratio to ours) replace `{{TABLES}}` in
peers.md.in, whose prose (setup differences, versions, machine) is kept by hand."""

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS = ["ours", "lws", "kaito"]
LABEL = {"ours": "ours", "lws": "LWS", "kaito": "Kaito"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_ms(x):
    if x is None:
        return "n/a"
    return f"{x / 1000:.2f} s" if x >= 1000 else f"{x:.0f} ms"


def cell(vals, ours_med, unit=fmt_ms, lower_better=True):
    """median (min-max) and the ratio to ours' median."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    s = unit(m)
    if len(vals) > 1:
        s += f" ({unit(min(vals))}-{unit(max(vals))})"
    if ours_med not in (None, 0):
        s += f", **{m / ours_med:.2f}x**"
    return s


def num(x):
    return f"{x:g}"


def load(path, at_rest_only=()):
    """Every run, the runs to report and, per session, each peer's version line. A peer's
    scenario run in several sessions (invocations of run.py; the first results carry no
    session) is reported from its latest session only: a later session re-measures it,
    e.g. with another build or settings, possibly for one peer alone (`--peers ours`),
    which leaves the other peers' figures from their own latest session. A session in
    AT_REST_ONLY (one taken on a loaded machine) gives only the figures at rest (see
    `steady_runs`); every other figure comes from the other sessions."""
    every, versions = [], defaultdict(dict)
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        r.setdefault("session", "")
        if "scenario" in r:
            every.append(r)
        elif "version" in r:
            versions[r["session"]][r["peer"]] = r
    runs = [r for r in every if r["session"] not in at_rest_only]
    latest = {}
    for r in runs:
        k = (r["scenario"], r["n"], r["peer"])
        latest[k] = max(latest.get(k, ""), r["session"])
    return every, [r for r in runs if r["session"] == latest[(r["scenario"], r["n"], r["peer"])]], versions


def steady_runs(every):
    """The runs with a window at rest (30 s or more), each peer's from its latest session
    that has one (the request and write counts at rest do not depend on the machine's load)."""
    steady = [r for r in every if r.get("steady_s", 0) >= 30]
    latest = {}
    for r in steady:
        latest[r["peer"]] = max(latest.get(r["peer"], ""), r["session"])
    return [r for r in steady if r["session"] == latest[r["peer"]]]


def runs_note(versions, rs):
    """Which run (and build of ours) each peer's figures come from, e.g.
    "ours: release build, run B; LWS, Kaito: run A"."""
    by = defaultdict(list)
    for p in PEERS:
        ss = sorted({r["session"] for r in rs if r["peer"] in (p, p + "-interval")})
        if ss:
            by[", ".join(session_note(versions, x) if p == "ours" else f"run {run_letter(versions, x)}"
                         for x in ss)].append(LABEL[p])
    if len({r["session"] for r in rs}) == 1:
        return session_note(versions, rs[0]["session"])
    return "; ".join(f"{', '.join(ps)}: {note}" for note, ps in by.items())


def session_note(versions, session):
    """Which build of ours and which session a row comes from."""
    v = versions.get(session, {}).get("ours", {}).get("version", "")
    build = "release" if "release" in v else "debug" if "debug" in v else "?"
    return f"{build} build, run {run_letter(versions, session)}"


def run_letter(versions, session):
    """Runs are named A, B, C... in the order of their sessions (the first has none)."""
    order = sorted(set(versions) | {session})
    return "ABCDEFGH"[order.index(session)] if order.index(session) < 8 else session


def per_run_latency(r, key):
    """p50 over models and the last model, of milestone KEY (ms after apply)."""
    vals = sorted(m[key] for m in r["models"].values() if m.get(key) is not None)
    if not vals:
        return None, None
    return statistics.median(vals), vals[-1]


def tables(runs, steady, versions):
    by = defaultdict(list)
    for r in runs:
        if r["scenario"] in ("autoscale", "group-late"):
            continue
        by[(r["scenario"], r["n"], r["peer"])].append(r)
    peers = [p for p in PEERS if any(k[2] == p for k in by)]
    out = []
    hdr = "| scenario | " + " | ".join(LABEL[p] for p in peers) + " |\n|---|" + "---|" * len(peers)
    keys = sorted({(s, n) for s, n, _ in by}, key=lambda k: (k[0] != "single", k[1]))

    def row(title, fn, unit=fmt_ms):
        lines = []
        for s, n in keys:
            ours = [fn(r) for r in by.get((s, n, "ours"), [])]
            om = med(ours)
            cells = []
            for p in peers:
                rs = by.get((s, n, p), [])
                vals = [fn(r) for r in rs]
                note = f" [{len(rs)} runs, {session_note(versions, rs[0]['session'])}]" if rs else ""
                cells.append(cell(vals, om if p != "ours" else None, unit) + (note if p == "ours" else ""))
            name = f"{n} x 1 pod" if s == "single" else f"{n} x 2-pod group"
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return [f"\n**{title}**\n", hdr] + lines

    out += row("Apply -> pod Ready, median over models (p50)", lambda r: per_run_latency(r, "ready")[0])
    out += row("Apply -> last model Ready", lambda r: per_run_latency(r, "ready")[1])
    out += row("Apply -> first pod seen, p50 over models", lambda r: per_run_latency(r, "seen")[0])
    out += row("Apply -> pod bound to a node, p50 over models", lambda r: per_run_latency(r, "bound")[0])
    out += row("API requests by the operator during the burst (apply -> all Ready + 2 s)",
               lambda r: r["api_burst"]["total"], num)
    out += row("... of which writes", lambda r: r["api_burst"]["writes"], num)
    if any("api_burst_sts" in r for r in runs):
        out += row("Requests by the controller manager's StatefulSet controller during the burst (the pods of the peers' "
                   "StatefulSets)",
                   lambda r: r["api_burst_sts"]["total"] if "api_burst_sts" in r else None, num)
    out += row("Operator CPU seconds during the burst", lambda r: (r.get("proc_burst") or {}).get("cpu_s"), num)
    out += row("Operator RSS peak during the burst (MiB)", lambda r: (r.get("proc_burst") or {}).get("rss_peak_mib"), num)
    if steady:
        out.append(f"\n**Steady state** ({steady[0]['scenario']} N={steady[0]['n']}, {steady[0]['steady_s']:.0f} s after the burst; "
                   f"{runs_note(versions, steady)})\n")
        out.append("| figure | " + " | ".join(LABEL[p] for p in peers) + " |\n|---|" + "---|" * len(peers))
        rows = [("API requests", lambda r: r["api_steady"]["total"], num),
                ("writes", lambda r: r["api_steady"]["writes"], num),
                ("... of which to the leader-election Lease", lambda r: lease_writes(r["api_steady"]), num),
                ("CPU seconds", lambda r: (r.get("proc_steady") or {}).get("cpu_s"), num),
                ("RSS at the end (MiB)", lambda r: (r.get("proc_steady") or {}).get("rss_end_mib"), num)]
        if any(r.get("proc_standby_steady") for r in steady):
            # Ours with the chart's replicas: the figures above are the leader's.
            rows += [("standby replicas: CPU seconds",
                      lambda r: standby(r, "cpu_s"), num),
                     ("standby replicas: RSS at the end (MiB)",
                      lambda r: standby(r, "rss_end_mib"), num)]
        for title, fn, unit in rows:
            om = med([fn(r) for r in steady if r["peer"] == "ours"])
            out.append(f"| {title} | " + " | ".join(
                cell([fn(r) for r in steady if r["peer"] == p], om if p != "ours" else None, unit) for p in peers) + " |")
        out.append("\nRequests at rest, by verb and resource (first run):\n")
        for p in peers:
            rs = [r for r in steady if r["peer"] == p]
            if rs:
                br = rs[0]["api_steady"]["by_resource"]
                out.append(f"- {LABEL[p]}: " + (", ".join(f"{k} {v}" for k, v in br.items()) or "none"))
    # Only runs whose recovery was timed once the group had settled (earlier runs could stop
    # the clock before an operator that recreates the whole group deleted the old ranks).
    for scen, when in (("group", "right after the groups came up"),
                       ("group-late", "{delay} s after the groups came up")):
        groups = [r for r in runs if r["scenario"] == scen and r.get("recovery_method") == "settled-5s"]
        if not groups:
            continue
        when = when.format(delay=groups[0].get("recovery_delay_s"))
        out.append(f"\n**Group recovery, rank deleted {when}**: one rank of a 2-pod group deleted -> the whole "
                   f"group Ready again and settled (5 s without pod events); "
                   f"{len([r for r in groups if r['peer'] == 'ours'])} runs each "
                   f"({runs_note(versions, groups)})\n")
        out.append("| | " + " | ".join(LABEL[p] for p in peers) + " |\n|---|" + "---|" * len(peers))
        om = med([r.get("recovery_ms") for r in groups if r["peer"] == "ours"])
        out.append("| recovery | " + " | ".join(
            cell([r.get("recovery_ms") for r in groups if r["peer"] == p], om if p != "ours" else None)
            for p in peers) + " |")
    out += autoscale_table(runs, versions)
    out.append("\n**Burst requests by verb and resource** (16 x 1 pod, first run)\n")
    for p in peers:
        rs = by.get(("single", 16, p), [])
        if rs:
            out.append(f"- {LABEL[p]}: " + ", ".join(f"{k} {v}" for k, v in rs[0]["api_burst"]["by_resource"].items()))
    over = [r for r in runs if r.get("unplaced")]
    if over:
        out.append("\n**What each operator tells the user about the models that do not fit** (20 x 1 pod, first run; "
                   "one unplaced model quoted, the others read the same)\n")
        for p in peers:
            rs = [r for r in over if r["peer"] == p]
            if not rs:
                continue
            r = rs[0]
            name, rep = sorted(r["unplaced"].items())[0]
            out.append(f"- {LABEL[p]}, `{name}` ({len(r['unplaced'])} not Ready of {r['n']}):")
            st = rep.get("status") or {}
            conds = st.get("conditions") or []
            for c in conds:
                out.append(f"  - condition `{c.get('type')}={c.get('status')}` reason `{c.get('reason')}`: "
                           f"\"{(c.get('message') or '').strip()}\"")
            # Our plan and resolved launch config are long and say nothing about placement.
            other = {k: v for k, v in st.items() if k not in ("conditions", "plan", "resolved")}
            if other:
                out.append(f"  - other status fields: `{json.dumps(other)[:400]}`")
            if not conds and not other:
                out.append("  - status: empty")
            for e in rep.get("events", [])[:6] or ["(no Events)"]:
                out.append(f"  - event: {e}")
    return "\n".join(out)


def standby(r: dict, key: str):
    """The sum of KEY over a run's standby replicas at rest; None for a peer without them."""
    ws = r.get("proc_standby_steady")
    if not ws or any(key not in w for w in ws):
        return None
    return round(sum(w[key] for w in ws), 3)


def lease_writes(api: dict) -> int:
    """Writes to Leases (leader election's renewals) in an audit_requests result."""
    verbs = ("create", "update", "patch", "delete")
    return sum(n for k, n in (api.get("by_resource") or {}).items()
               if k.split(" ", 1)[0] in verbs and k.split(" ", 1)[-1] == "leases")


def autoscale_table(runs, versions):
    rs = [r for r in runs if r["scenario"] == "autoscale"]
    if not rs:
        return []
    for r in rs:
        if r["peer"] == "ours" and r.get("interval_s"):
            r["peer"] = "ours-interval"
    peers = [p for p in ("ours", "lws", "ours-interval") if any(r["peer"] == p for r in rs)]
    iv = next((r["interval_s"] for r in rs if r.get("interval_s")), None)
    label = {"ours": "ours (builtin autoscaler, defaults)", "lws": "LWS + HPA (autoscaling/v2, defaults)",
             "ours-interval": f"ours, `intervalSeconds: {iv}` (the HPA's period)"}
    r0 = rs[0]
    out = [f"\n**Autoscaling**: one model of 2-pod groups at 1 replica, load stepped from 0 to {r0['load']} requests "
           f"in flight (target {r0['target']} per replica: 2 replicas' worth); "
           f"{len([r for r in rs if r['peer'] == 'ours'])} runs each ({runs_note(versions, rs)})\n",
           "| figure | " + " | ".join(label[p] for p in peers) + " |\n|---|" + "---|" * len(peers)]

    def api(r, who, writes=False):
        a = r.get(f"api_{who}") or {}
        return a.get("writes" if writes else "total")

    for title, fn, unit in [
        ("load step -> `spec.replicas` changed (scale decision)", lambda r: r.get("decision_ms"), fmt_ms),
        ("load step -> every pod of the new group Ready", lambda r: r.get("ready_ms"), fmt_ms),
        ("scale decision -> new group Ready",
         lambda r: r["ready_ms"] - r["decision_ms"] if r.get("ready_ms") and r.get("decision_ms") else None, fmt_ms),
        ("replicas decided (first change)", lambda r: r.get("decided_replicas"), num),
        ("highest replicas in the 20 s after", lambda r: r.get("replicas_max"), num),
        ("apply -> autoscaler reads the metrics", lambda r: r.get("t_metrics_ms"), fmt_ms),
        ("API requests, load step -> group Ready + 2 s: operator", lambda r: api(r, "operator"), num),
        ("... HPA controller", lambda r: api(r, "hpa"), num),
        ("... metrics adapter", lambda r: api(r, "adapter"), num),
        ("operator CPU seconds in that window", lambda r: (r.get("proc") or {}).get("cpu_s"), num),
    ]:
        om = med([fn(r) for r in rs if r["peer"] == "ours"])
        out.append(f"| {title} | " + " | ".join(
            cell([fn(r) for r in rs if r["peer"] == p], om if p != "ours" else None, unit) for p in peers) + " |")
    out.append("\nRequests in that window by verb and resource (first run):\n")
    for p in [p for p in peers if p in LABEL]:
        r = [x for x in rs if x["peer"] == p][0]
        for who in ("operator", "hpa", "adapter"):
            br = (r.get(f"api_{who}") or {}).get("by_resource") or {}
            if br:
                out.append(f"- {LABEL[p]}, {who}: " + ", ".join(f"{k} {v}" for k, v in br.items()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default=str(REPO / "docs" / "benchmarks" / "peers-results.jsonl"))
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks" / "peers.md"))
    ap.add_argument("--at-rest-only", default="",
                    help="comma-separated sessions (e.g. 2026-12-05T06:40) taken on a loaded machine: only their "
                         "figures at rest are reported, every other figure from each peer's latest other session")
    a = ap.parse_args()
    every, runs, versions = load(a.results, {x for x in a.at_rest_only.split(",") if x})
    tpl = (Path(__file__).parent / "peers.md.in").read_text()
    reps = sorted({r["rep"] for r in runs if r["scenario"] == "single"})
    vlines = []
    for session, vs in sorted(versions.items()):
        for p, v in vs.items():
            las = [r["loadavg"] for r in every if r["session"] == session and r["peer"] == p and "loadavg" in r]
            la = f", 1-minute load average {min(las):.1f}-{max(las):.1f} during its runs" if las else ""
            vlines.append(f"- run {run_letter(versions, session)}: {LABEL[p]}: {v['version']}{la}")
    doc = tpl.replace("{{TABLES}}", tables(runs, steady_runs(every), versions)) \
             .replace("{{VERSIONS}}", "\n".join(vlines)) \
             .replace("{{REPS}}", str(len(reps))) \
             .replace("{{DATE}}", time.strftime("%Y-%m-%d", time.gmtime(runs[0]["t_apply"] / 1000)) if runs else "?")
    Path(a.out).write_text(doc)


if __name__ == "__main__":
    main()
