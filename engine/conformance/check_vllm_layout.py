"""Resolves rendered DP/EP/MTP/KV-cache `vllm serve` commands into vLLM's own engine config.

The parser check (check_vllm.py) proves each flag exists; this one proves the flags mean
what the renderer intends once vLLM resolves them. For every command with expert
parallelism, data parallelism, a speculative config or a KV cache type, it runs
`create_engine_config` (what `vllm serve` runs before it loads weights) against a
DeepSeek-V3-shaped config.json written to a temporary directory (tiny sizes, R1's layout:
256 routed experts, one MTP layer, no weights needed), and checks the result:

- the DP size, and with DP across nodes the rank's first DP rank (0 on the leader, its
  `--data-parallel-start-rank` on a worker), the leader's address and RPC port, and that
  neither hybrid nor external load balancing was switched on (one API server, on the
  leader, balances every DP rank);
- expert parallelism on when rendered;
- MTP resolved to vLLM's `mtp` method with the rendered token count;
- the KV cache type.

vLLM runs on its CPU platform here, which cannot load FP8/Ascend quantization or run EPLB
(CUDA/ROCm/XPU only): `--quantization` and the EPLB flags are dropped before resolving
(the parser check covers them), and so are vllm-ascend's KV connector and Ray backend. Prints one line per failed command and exits 1 if any.

Usage: python check_vllm_layout.py < matrix.jsonl
"""

import contextlib
import io
import json
import os
import sys
import tempfile

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_PLUGINS", "none")
os.environ["HF_HUB_OFFLINE"] = "1"

import vllm  # noqa: E402
from vllm.engine.arg_utils import AsyncEngineArgs  # noqa: E402
from vllm.usage.usage_lib import UsageContext  # noqa: E402
from vllm.utils.argparse_utils import FlexibleArgumentParser  # noqa: E402

try:  # the module moved between releases
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser

# DeepSeek-V3's architecture at toy widths: what vLLM reads to resolve MoE, MLA and MTP.
DEEPSEEK_V3_SHAPE = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 256,
    "intermediate_size": 512,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 3,
    "first_k_dense_replace": 1,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "kv_lora_rank": 64,
    "q_lora_rank": 96,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "num_nextn_predict_layers": 1,
    "max_position_embeddings": 163840,
    "vocab_size": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
}

# Valued flags and switches dropped before resolving on the CPU platform.
DROP_VALUED = {"--quantization", "--eplb-config"}
DROP_SWITCHES = {"--enable-eplb"}

RELEVANT = (
    "--enable-expert-parallel",
    "--data-parallel-size",
    "--speculative-config",
    "--kv-cache-dtype",
)


def value(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


def cpu_argv(argv, model, ascend):
    """`argv` as this machine's vLLM can resolve it: without what needs an accelerator, and
    for vllm-ascend without its Mooncake connector (registered by its NPU platform, which
    cannot activate here) and Ray (its TP/PP launch across nodes; not installed here)."""
    drop = set(DROP_VALUED)
    if ascend:
        drop |= {"--kv-transfer-config", "--distributed-executor-backend"}
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in drop:
            skip = True
            continue
        if a in DROP_SWITCHES:
            continue
        out.append(a)
    out[0] = model
    return out


def problems(argv, cfg):
    pc = cfg.parallel_config
    found = []

    def expect(what, got, want):
        if got != want:
            found.append(f"{what}: vLLM resolved {got!r}, the command means {want!r}")

    expect("data_parallel_size", pc.data_parallel_size, int(value(argv, "--data-parallel-size") or 1))
    expect("enable_expert_parallel", pc.enable_expert_parallel, "--enable-expert-parallel" in argv)
    local = value(argv, "--data-parallel-size-local")
    if local is not None:
        expect("data_parallel_size_local", pc.data_parallel_size_local, int(local))
        expect("data_parallel_rank", pc.data_parallel_rank, int(value(argv, "--data-parallel-start-rank") or 0))
        expect("data_parallel_master_ip", pc.data_parallel_master_ip, value(argv, "--data-parallel-address"))
        expect("data_parallel_rpc_port", pc.data_parallel_rpc_port, int(value(argv, "--data-parallel-rpc-port")))
        expect("data_parallel_hybrid_lb", pc.data_parallel_hybrid_lb, False)
        expect("data_parallel_external_lb", pc.data_parallel_external_lb, False)
    spec = value(argv, "--speculative-config")
    if spec is not None:
        sc = cfg.speculative_config
        want = json.loads(spec)
        expect("speculative method", sc and sc.method, "mtp")
        expect("num_speculative_tokens", sc and sc.num_speculative_tokens, want["num_speculative_tokens"])
    expect("cache_dtype", cfg.cache_config.cache_dtype, value(argv, "--kv-cache-dtype") or "auto")
    return found


# A second node's rank without `--headless` turns on hybrid load balancing (an API server
# per node): this must be caught, or the check checks nothing.
PROBE = [
    "serve", "m", "--data-parallel-size", "4", "--data-parallel-size-local", "2",
    "--data-parallel-address", "10.0.0.9", "--data-parallel-rpc-port", "29550",
    "--data-parallel-start-rank", "2", "--enable-expert-parallel",
]


def resolve(parser, argv, model, ascend=False):
    """What is wrong with `argv` once vLLM resolves it (empty when nothing is)."""
    args = parser.parse_args(cpu_argv(argv[1:], model, ascend))
    args.model = model
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            engine_args = AsyncEngineArgs.from_cli_args(args)
            cfg = engine_args.create_engine_config(
                usage_context=UsageContext.OPENAI_API_SERVER, headless=args.headless
            )
        return problems(argv[1:], cfg)
    except Exception as e:  # vLLM's own refusal of the layout
        return [f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"]


def main():
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    checked, failures = 0, []
    with tempfile.TemporaryDirectory() as model:
        with open(os.path.join(model, "config.json"), "w") as f:
            json.dump(DEEPSEEK_V3_SHAPE, f)
        for line in sys.stdin:
            case = json.loads(line)
            argv = case["argv"]
            if case["program"] != "vllm" or not any(f in argv for f in RELEVANT):
                continue
            checked += 1
            found = resolve(parser, argv, model, case["engine"] == "vllm-ascend")
            if found:
                failures.append((case["shell"], found))
        if not resolve(parser, PROBE, model):
            failures.append((" ".join(PROBE), ["a leader with a start rank resolved as intended"]))
    for shell, found in failures:
        print(f"REJECTED: {shell}")
        for p in found:
            print(f"  -> {p}")
    print(f"vllm {vllm.__version__} layouts: {checked} commands resolved, {len(failures)} wrong")
    sys.exit(1 if failures or checked == 0 else 0)


if __name__ == "__main__":
    main()
