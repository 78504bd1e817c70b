"""Feeds rendered SGLang commands to the installed SGLang's own argument parsing.

Reads JSON lines from `render_matrix` on stdin (already filtered to SGLang) and, for every
`python3 -m sglang.launch_server ...` command, runs what `launch_server` runs first:
`prepare_server_args` (argparse plus the `ServerArgs` record and its `__post_init__`).
SGLang's `check_server_args` runs only after resolution, which needs the model's config
and the GPUs, so it is left to a GPU smoke test. `--speculative-algorithm`, a free string
to the parser, is looked up in SGLang's own algorithm registry. Prints one line per rejected command and
exits 1 if any.

Usage: python check_sglang.py < matrix.jsonl
"""

import contextlib
import io
import json
import logging
import sys

import sglang
from sglang.srt.server_args import prepare_server_args
from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

MODULE = ["-m", "sglang.launch_server"]


def check(case):
    argv = case["argv"]
    if argv[:2] != MODULE:
        return f"not `python3 -m sglang.launch_server`: {argv[:2]}"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = prepare_server_args(argv[2:])
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    if args.speculative_algorithm is not None:
        try:
            SpeculativeAlgorithm.from_string(args.speculative_algorithm)
        except ValueError as e:
            return str(e)
    return None



def main():
    checked, failures = 0, []
    for line in sys.stdin:
        case = json.loads(line)
        if case["program"] != "python3":
            continue
        checked += 1
        problem = check(case)
        if problem:
            failures.append((case["shell"], problem))
        logging.disable(logging.WARNING)
    # A flag no engine has must be refused, or this check checks nothing.
    probe = {"argv": [*MODULE, "--model-path", "m", "--no-such-flag-dso"]}
    if check(probe) is None:
        failures.append((" ".join(probe["argv"]), "an unknown flag was accepted"))
    spec_probe = {"argv": [*MODULE, "--model-path", "m", "--speculative-algorithm", "NO_SUCH_DSO"]}
    if check(spec_probe) is None:
        failures.append((" ".join(spec_probe["argv"]), "an unknown speculative algorithm was accepted"))
    for shell, problem in failures:
        print(f"REJECTED: {shell}\n  -> {problem}")
    print(f"sglang {sglang.__version__}: {checked} commands, {len(failures)} rejected")
    sys.exit(1 if failures or checked == 0 else 0)


if __name__ == "__main__":
    main()
