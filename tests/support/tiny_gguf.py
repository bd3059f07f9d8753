"""A tiny random llama-architecture GGUF that llama.cpp loads and generates (garbage) from.

About half a megabyte: 2 layers, 64-wide, an SPM vocabulary of 3 specials, the 256 byte
tokens and a few `▁word` pieces, and an embedded ChatML-like chat template. The weights are
seeded, so the same call writes the same bytes. Only word pieces have non-zero output rows,
so sampling picks words (readable garbage) rather than specials or stray bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_FF = 128
CONTEXT = 512

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

WORDS = (
    "the", "a", "bee", "hive", "queen", "worker", "honey", "buzz", "flower", "sun", "rain",
    "tree", "red", "blue", "green", "small", "big", "fast", "slow", "is", "was", "and", "or",
    "to", "of", "in", "on", "we", "you", "they", "hello", "world", "model", "token", "word",
    "time", "day", "night", "good", "bad",
)

# llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte.
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of the SPM vocabulary."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [_UNKNOWN, _CONTROL, _CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [_BYTE] * 256
    tokens += [f"▁{w}" for w in WORDS]
    types += [_NORMAL] * len(WORDS)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(WORDS))]
    return tokens, scores, types


def write_tiny_llama_gguf(path: Path | str, *, seed: int = 0) -> Path:
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("rbee-tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    output = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    output[3 + 256:] = rand(len(WORDS), N_EMBD, scale=3.0)  # only words can win
    writer.add_tensor("token_embd.weight", rand(n_vocab, N_EMBD, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", rand(N_EMBD, N_EMBD, scale=0.1))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(N_FF, N_EMBD, scale=0.1))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(N_FF, N_EMBD, scale=0.1))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(N_EMBD, N_FF, scale=0.1))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
