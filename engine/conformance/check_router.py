"""Feeds rendered router commands to the installed sglang-router's own argument parsing.

Reads JSON lines from `render_matrix` on stdin (already filtered to the router) and, for
every `sglang-router launch ...` command, runs what `sglang-router launch` runs before it
starts: `parse_router_args` (argparse plus the `RouterArgs` record). Then checks that the
parsed record is what the operator means: prefill/decode mode, Kubernetes service
discovery in the model's namespace, both selectors, metrics on the rendered port. Prints
one line per rejected command and exits 1 if any.

Usage: python check_router.py < matrix.jsonl
"""

import contextlib
import io
import json
import sys
from importlib.metadata import version

from sglang_router.launch_router import parse_router_args


def parse(argv):
    if not argv or argv[0] != "launch":
        return None, f"not `sglang-router launch`: {argv[:1]}"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parse_router_args(argv[1:]), None
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        return None, lines[-1] if lines else "refused"
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"


def flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def check(case):
    argv = case["argv"]
    args, problem = parse(argv)
    if problem:
        return problem
    wanted = {
        "pd_disaggregation": True,
        "service_discovery": True,
        "service_discovery_namespace": flag(argv, "--service-discovery-namespace"),
        "prometheus_port": int(flag(argv, "--prometheus-port")),
        "port": int(flag(argv, "--port")),
    }
    for field, want in wanted.items():
        have = getattr(args, field, None)
        if have != want:
            return f"parsed {field}={have!r}, rendered {want!r}"
    for field in ("prefill_selector", "decode_selector"):
        if not getattr(args, field, None):
            return f"parsed no {field}"
    return None


def main():
    checked, failures = 0, []
    for line in sys.stdin:
        case = json.loads(line)
        checked += 1
        problem = check(case)
        if problem:
            failures.append((case["shell"], problem))
    # A flag the router does not have must be refused, or this check checks nothing.
    probe = {"argv": ["launch", "--pd-disaggregation", "--no-such-flag-dso"], "shell": "probe"}
    if parse(probe["argv"])[1] is None:
        failures.append(("probe", "an unknown flag was accepted"))
    for shell, problem in failures:
        print(f"REJECTED: {shell}\n  -> {problem}")
    print(f"sglang-router {version('sglang-router')}: {checked} commands, {len(failures)} rejected")
    sys.exit(1 if failures or checked == 0 else 0)


if __name__ == "__main__":
    main()
