"""Feeds rendered `vllm serve` commands to the installed vLLM's own argument parser.

Reads JSON lines from `render_matrix` on stdin (already filtered to one engine) and, for
every `vllm serve` command, runs what `vllm serve` runs before it loads a model: the
parser from `make_arg_parser`, `validate_parsed_serve_args`, and the engine arguments
built from the parsed namespace (vllm-ascend's commands with the quantization method its
NPU platform adds). Every environment variable named `VLLM_*` that a command
sets must be one vLLM reads. JSON values the parser takes as free-form are checked against
what the engine reads from them at start-up: the `--speculative-config` method against the
methods `SpeculativeConfig` accepts, and vllm-ascend's `--additional-config` `eplb_config`
keys against its `EplbConfig` defaults. Prints one line per rejected command and exits 1
if any.

Usage: python check_vllm.py < matrix.jsonl
"""

import ast
import contextlib
import importlib.util
import io
import json
import os
import pathlib
import sys
import typing

# The parser's defaults consult the platform; on a machine without a GPU the supported
# way to get one is the CPU platform, selected explicitly.
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
# Only vLLM's built-in platforms: vllm-ascend's platform plugin (installed in the venv that
# parses for Ascend and ROCm) would activate and import torch_npu, which needs CANN.
os.environ.setdefault("VLLM_PLUGINS", "none")

import vllm.envs  # noqa: E402
from vllm.engine.arg_utils import AsyncEngineArgs  # noqa: E402
from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS  # noqa: E402
from vllm.utils.argparse_utils import FlexibleArgumentParser  # noqa: E402

try:  # the module moved between releases
    from vllm.entrypoints.launchers.cli_args import (
        make_arg_parser,
        validate_parsed_serve_args,
    )
except ImportError:
    from vllm.entrypoints.openai.cli_args import (
        make_arg_parser,
        validate_parsed_serve_args,
    )


def ascend_quantization_method():
    """`ASCEND_QUANTIZATION_METHOD` of the installed vllm-ascend, read without importing it."""
    spec = importlib.util.find_spec("vllm_ascend")
    source = pathlib.Path(spec.origin).with_name("utils.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "ASCEND_QUANTIZATION_METHOD" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit("vllm_ascend/utils.py defines no ASCEND_QUANTIZATION_METHOD")


def ascend_eplb_keys():
    """The keys vllm-ascend's `EplbConfig` accepts (its `_defaults`), read without importing it."""
    spec = importlib.util.find_spec("vllm_ascend")
    source = pathlib.Path(spec.origin).with_name("ascend_config.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "EplbConfig":
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(
                    getattr(t, "id", None) == "_defaults" for t in stmt.targets
                ):
                    return set(ast.literal_eval(stmt.value))
    raise SystemExit("vllm_ascend/ascend_config.py defines no EplbConfig._defaults")


def free_form_json(args, ascend):
    """What start-up would refuse in the JSON options the parser passes through unread."""
    spec = args.speculative_config
    if spec is not None:
        from vllm.config.speculative import SpeculativeConfig

        fields = getattr(SpeculativeConfig, "__dataclass_fields__", None)
        annotation = fields["method"].type if fields else SpeculativeConfig.model_fields["method"].annotation
        methods = set()
        stack = [annotation]
        while stack:  # flatten Optional[Literal[...]] and nested Literals
            t = stack.pop()
            for a in typing.get_args(t):
                (methods.add(a) if isinstance(a, str) else stack.append(a))
        if spec.get("method") not in methods:
            return f"--speculative-config method {spec.get('method')!r} is not one of vLLM's"
    extra = getattr(args, "additional_config", None) or {}
    if ascend and "eplb_config" in extra:
        unknown = set(extra["eplb_config"]) - ascend_eplb_keys()
        if unknown:
            return f"vllm-ascend's eplb_config has no {sorted(unknown)}"
    return None


def parser(ascend):
    p = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    methods = list(QUANTIZATION_METHODS)
    if ascend:
        # vllm-ascend's NPU platform registers one more method when it activates (its
        # `pre_register_and_update`); it cannot activate here (vllm_ascend.utils imports
        # torch_npu, which needs CANN), so the name is read from the installed source.
        methods.append(ascend_quantization_method())
    action = p._option_string_actions["--quantization"]
    if action.choices is not None:
        methods = [m for m in action.choices] + [m for m in methods if m not in action.choices]
    # The parser takes any string and the model config refuses unknown methods later, at
    # load time; check the value against the engine's own registry here.
    action.choices = methods
    return p


def check(case, parse, ascend=False):
    argv = case["argv"]
    if argv[:1] != ["serve"]:
        return f"not a `vllm serve` command: {argv[:1]}"
    unknown_env = [
        k for k, _ in case["env"]
        if k.startswith("VLLM_") and k not in vllm.envs.environment_variables
    ]
    if unknown_env:
        return f"vLLM reads no such environment variable: {unknown_env}"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parse(argv[1:])
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    args.subparser = "serve"
    try:
        validate_parsed_serve_args(args)
        if args.model_tag is not None:
            args.model = args.model_tag
        AsyncEngineArgs.from_cli_args(args)
    except Exception as e:  # the engine's own validation: any refusal is a failure
        return f"{type(e).__name__}: {e}"
    return free_form_json(args, ascend)


PROBE = {"argv": ["serve", "m", "--no-such-flag-dso"], "env": []}
SPEC_PROBE = {
    "argv": ["serve", "m", "--speculative-config", '{"method": "no-such-method-dso"}'],
    "env": [],
}


def main():
    # vllm-ascend's commands get its extension; the others (e.g. AMD's, parsed by the same
    # vLLM release) the plain parser.
    parsers = {False: parser(False).parse_args}
    parse = parsers[False]
    checked, failures = 0, []
    for line in sys.stdin:
        case = json.loads(line)
        if case["program"] != "vllm":
            continue
        checked += 1
        ascend = case["engine"] == "vllm-ascend"
        if ascend not in parsers:
            parsers[ascend] = parser(ascend).parse_args
        problem = check(case, parsers[ascend], ascend)
        if problem:
            failures.append((case["shell"], problem))
    # A flag no engine has must be refused, or this check checks nothing.
    if check(PROBE, parse) is None:
        failures.append((" ".join(PROBE["argv"]), "an unknown flag was accepted"))
    if check(SPEC_PROBE, parse) is None:
        failures.append((" ".join(SPEC_PROBE["argv"]), "an unknown speculative method was accepted"))
    for shell, problem in failures:
        print(f"REJECTED: {shell}\n  -> {problem}")
    print(f"vllm {vllm.__version__}: {checked} commands, {len(failures)} rejected")
    sys.exit(1 if failures or checked == 0 else 0)


if __name__ == "__main__":
    main()
