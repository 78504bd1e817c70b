"""What the runner measures besides the watcher's timestamps: the operator process's
CPU seconds and RSS from /proc, and the API requests of each identity from the audit
log (Metadata level, one line per request stage; a request is counted once, by auditID)."""

import json
import os
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def now_ms() -> int:
    return int(time.time() * 1000)


class ProcSampler:
    """Samples /proc/PID every 250 ms: CPU seconds (user + system) and RSS."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples = []  # (t_ms, cpu_s, rss_kib)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def read(self):
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
            rss = 0
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
            return now_ms(), cpu, rss
        except (OSError, IndexError, ValueError):
            return None

    def _run(self):
        while not self._stop.is_set():
            s = self.read()
            if s:
                self.samples.append(s)
            self._stop.wait(0.25)

    def stop(self):
        self._stop.set()
        self._t.join()

    def window(self, t0: int, t1: int) -> dict:
        """CPU seconds used and peak/last RSS (MiB) between t0 and t1."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        before = [s for s in self.samples if s[0] <= t0]
        if not inside:
            return {}
        start = before[-1] if before else inside[0]
        return {"cpu_s": round(inside[-1][1] - start[1], 3),
                "rss_peak_mib": round(max(s[2] for s in inside) / 1024, 1),
                "rss_end_mib": round(inside[-1][2] / 1024, 1)}


class Watcher:
    """The Rust `peers-watch` process for one namespace."""

    def __init__(self, binary: Path, kubeconfig: Path, ns: str, out: Path):
        self.out = out
        self.f = open(out, "w")
        env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        self.proc = subprocess.Popen([str(binary), ns], env=env, stdout=self.f, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(e["event"] == "watching" for e in self.events()):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("peers-watch exited")
            time.sleep(0.1)
        raise RuntimeError("peers-watch did not start watching within 30 s")

    def events(self) -> list:
        self.f.flush()
        out = []
        for line in self.out.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.f.close()


def _ts_ms(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def audit_requests(log: Path, user: str, t0: int, t1: int) -> dict:
    """Requests by USER received in [t0, t1): counts by verb, by verb+resource, and the
    number of writes."""
    seen = set()
    by = Counter()
    if not log.exists():
        return {"total": 0, "writes": 0, "by_verb": {}, "by_resource": {}}
    with open(log) as f:
        for line in f:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if e.get("user", {}).get("username") != user or e["auditID"] in seen:
                continue
            t = _ts_ms(e["requestReceivedTimestamp"])
            if not (t0 <= t < t1):
                continue
            seen.add(e["auditID"])
            o = e.get("objectRef") or {}
            res = o.get("resource", e.get("requestURI", "?"))
            if o.get("subresource"):
                res += "/" + o["subresource"]
            by[(e["verb"], res)] += 1
    verbs = Counter()
    for (v, _), n in by.items():
        verbs[v] += n
    writes = sum(n for v, n in verbs.items() if v in ("create", "update", "patch", "delete", "deletecollection"))
    return {"total": sum(by.values()), "writes": writes, "by_verb": dict(verbs),
            "by_resource": {f"{v} {r}": n for (v, r), n in sorted(by.items())}}
