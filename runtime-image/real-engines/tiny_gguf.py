"""The tiny random-weight GGUF that llama.cpp serves in tests and in the demo, without a
model hub: a byte-level BPE tokenizer (at most 512 tokens) trained locally with
`tokenizers`, and a Llama-architecture model written with `gguf` (Q8_0 matrices).

Needs only numpy, gguf and tokenizers, so the demo can write it from a small venv
(runtime-image/real-engines/tiny-gguf) without the torch and vLLM that tiny_models.py
needs for the other checkpoints; tiny_models.py shares the tokenizer and the writer.
Usage: python tiny_gguf.py OUT.gguf
"""

import json
import sys
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

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
BOS = "<|endoftext|>"
EOS = "<|im_end|>"


def train_tokenizer() -> Tokenizer:
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
    return tok


def write_gguf(path: Path, tok: Tokenizer) -> None:
    """A Llama-architecture GGUF (Q8_0 matrices) for llama.cpp with `tok`'s vocabulary."""

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
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = json.loads(tok.to_str())["model"]["merges"]
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
    writer.add_bos_token_id(tok.token_to_id(BOS))
    writer.add_eos_token_id(tok.token_to_id(EOS))
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


if __name__ == "__main__":
    out = Path(sys.argv[1])
    tmp = out.with_name(out.name + ".tmp")
    write_gguf(tmp, train_tokenizer())
    tmp.rename(out)
