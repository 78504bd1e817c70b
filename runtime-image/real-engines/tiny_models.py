"""Writes the tiny random-weight checkpoints the real-engine test serves, without a model hub.

One byte-level BPE tokenizer (at most 512 tokens; the small corpus yields fewer) is
trained locally with `tokenizers` and shared by:
  qwen2/        DeepSeek-R1-Distill architecture (Qwen2), for vLLM
  deepseek-v3/  DeepSeek-V3 architecture (MLA + MoE), for vLLM
  tiny-q8_0.gguf  a Llama-architecture GGUF (Q8_0 matrices) for llama.cpp, written with `gguf`
Dimensions are the smallest that vLLM's CPU backend accepts (head_dim 64; the real MLA
ranks). Usage: python tiny_models.py OUT_DIR (writes OUT_DIR/.done when complete).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

VOCAB = 512
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Deterministic text the tokenizer learns its merges from.
CORPUS = [
    f"The {w} of request {i} waits in the queue while the batch runs on the {d}."
    for i, (w, d) in enumerate(
        (w, d)
        for w in ["model", "token", "expert", "router", "cache", "prompt", "answer"]
        for d in ["cpu", "gpu", "node", "group", "replica"]
    )
] * 4


def tokenizer(out: Path) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
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


def gguf_model(path: Path, tok: PreTrainedTokenizerFast) -> None:
    import gguf

    hidden, ffn, heads, layers = 256, 512, 4, 2
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("dso-tiny")
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = tok.backend_tokenizer.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [
            gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL
            for t in tokens
        ]
    )
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_chat_template(CHAT_TEMPLATE)

    def matrix(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def norm(name: str) -> None:
        writer.add_tensor(name, np.ones(hidden, dtype=np.float32))

    matrix("token_embd.weight", len(tokens), hidden)
    norm("output_norm.weight")
    matrix("output.weight", len(tokens), hidden)
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight")
        for part in ["attn_q", "attn_k", "attn_v", "attn_output"]:
            matrix(f"blk.{i}.{part}.weight", hidden, hidden)
        norm(f"blk.{i}.ffn_norm.weight")
        matrix(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_up.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_down.weight", hidden, ffn)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tok = tokenizer(out / "tokenizer")
    qwen2(out / "qwen2", tok)
    deepseek_v3(out / "deepseek-v3", tok)
    gguf_model(out / "tiny-q8_0.gguf", tok)
    (out / ".done").touch()


if __name__ == "__main__":
    main()
