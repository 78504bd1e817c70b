"""Checks rendered `llama-server` commands against the pinned llama-server's `--help`.

Reads JSON lines from `render_matrix` on stdin (already filtered to llama.cpp). Every option
a command passes (an argument starting with `-` in an option position) must be one that
`llama-server --help` lists. Prints one line per rejected command and exits 1 if any.

Usage: python3 check_llamacpp.py /path/to/llama-server < matrix.jsonl
"""

import json
import re
import subprocess
import sys


def known_options(binary):
    out = subprocess.run(
        [binary, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    text = out.stdout + out.stderr
    options = set()
    for line in text.splitlines():
        # Option lines start with the spellings, comma separated, then the value and help:
        # "-np,   --parallel N     number of server slots ...". The help starts after the
        # first wide gap that is not followed by another spelling.
        if not line.startswith("-"):
            continue
        gap = re.search(r"\s{2,}(?![\s-])", line)
        head = line[: gap.start()] if gap else line
        options.update(re.findall(r"(?:^|[\s,])(--?[A-Za-z][A-Za-z0-9-]*)", head))
    if len(options) < 50:
        raise SystemExit(f"{binary} --help listed only {len(options)} options:\n{text[:2000]}")
    return options


def check(case, options):
    argv = case["argv"]
    unknown = [a for a in argv if a.startswith("-") and a not in options]
    return f"llama-server does not accept {unknown}" if unknown else None


def main():
    binary = sys.argv[1]
    options = known_options(binary)
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    checked, failures = 0, []
    for line in sys.stdin:
        case = json.loads(line)
        if case["program"] != "llama-server":
            continue
        checked += 1
        problem = check(case, options)
        if problem:
            failures.append((case["shell"], problem))
    # A flag no engine has must be refused, or this check checks nothing.
    if check({"argv": ["--no-such-flag-dso"]}, options) is None:
        failures.append(("llama-server --no-such-flag-dso", "an unknown flag was accepted"))
    for shell, problem in failures:
        print(f"REJECTED: {shell}\n  -> {problem}")
    build = (version.stdout + version.stderr).strip().splitlines()
    print(f"llama-server ({build[0] if build else 'unknown build'}): {checked} commands, "
          f"{len(failures)} rejected")
    sys.exit(1 if failures or checked == 0 else 0)


if __name__ == "__main__":
    main()
