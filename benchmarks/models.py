"""The models benchmarked: the organism's shape (0.8M parameters) and a larger random Llama (~30M)."""

from __future__ import annotations

from lengthrl.models.tiny import TinyModelSpec, count_parameters, make_model
from lengthrl.models.tokenizer import build_char_tokenizer

SHAPES = {
    "organism": TinyModelSpec(arch="llama"),  # the organism's shape (same spec as save_tiny_random_model)
    "llama30m": TinyModelSpec(arch="llama", hidden_size=512, num_layers=10, num_heads=8, num_kv_heads=4,
                              intermediate_size=1408, max_position_embeddings=1024),
}


def build(shape: str, seed: int = 0):
    """(model in eval mode, char tokenizer, parameter count) of a random model of `shape`."""
    tok = build_char_tokenizer()
    model = make_model(SHAPES[shape], tok, seed=seed).eval()
    return model, tok, count_parameters(model)


def prompts(tok, n: int) -> list[list[int]]:
    """n arithmetic prompts of varied lengths (so left padding is exercised)."""
    return [tok(f"compute: {i * 7 % 97}+{i * 13 % 89}*{i % 9 + 1} =")["input_ids"] for i in range(n)]
