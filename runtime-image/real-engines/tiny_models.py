"""Writes the tiny random-weight checkpoints the real-engine test serves, without a model hub.

One byte-level BPE tokenizer (at most 512 tokens; the small corpus yields fewer) is
trained locally with `tokenizers` and shared by:
  qwen2/        DeepSeek-R1-Distill architecture (Qwen2), for vLLM
  deepseek-v3/  DeepSeek-V3 architecture (MLA + MoE), for vLLM
  tiny-q8_0.gguf  a Llama-architecture GGUF (Q8_0 matrices) for llama.cpp (tiny_gguf.py)
Dimensions are the smallest that vLLM's CPU backend accepts (head_dim 64; the real MLA
ranks). Usage: python tiny_models.py OUT_DIR (writes OUT_DIR/.done when complete).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from tiny_gguf import BOS, CHAT_TEMPLATE, EOS, VOCAB, train_tokenizer, write_gguf


def tokenizer(out: Path) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=BOS,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def save_model(model, out: Path, tok: PreTrainedTokenizerFast) -> None:
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)


def qwen2(out: Path, tok) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    save_model(Qwen2ForCausalLM(cfg), out, tok)


def deepseek_v3(out: Path, tok) -> None:
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    experts = 8
    cfg = DeepseekV3Config(
        vocab_size=VOCAB,
        hidden_size=256,
        intermediate_size=512,
        moe_intermediate_size=128,
        num_hidden_layers=3,
        first_k_dense_replace=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_routed_experts=experts,
        num_experts_per_tok=2,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
        norm_topk_prob=True,
        q_lora_rank=None,
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    save_model(DeepseekV3ForCausalLM(cfg), out, tok)
    # vLLM routes V3 gates with `noaux_tc` + sigmoid scores and loads a per-expert
    # correction bias that `transformers` does not save.
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config.update(topk_method="noaux_tc", scoring_func="sigmoid")
    config_path.write_text(json.dumps(config, indent=2))
    weights_path = out / "model.safetensors"
    weights = load_file(weights_path)
    for layer in range(cfg.first_k_dense_replace, cfg.num_hidden_layers):
        key = f"model.layers.{layer}.mlp.gate.e_score_correction_bias"
        weights.setdefault(key, torch.zeros(experts, dtype=torch.float32))
    save_file(weights, weights_path, metadata={"format": "pt"})


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tok = tokenizer(out / "tokenizer")
    qwen2(out / "qwen2", tok)
    deepseek_v3(out / "deepseek-v3", tok)
    write_gguf(out / "tiny-q8_0.gguf", tok.backend_tokenizer)
    (out / ".done").touch()


if __name__ == "__main__":
    main()
