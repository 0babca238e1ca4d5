"""Models: the character tokenizer, tiny Qwen2/Llama models, loading a policy from a local directory, and the
supervised warm-up that makes the model organism."""

from lengthrl.models.loading import DTYPES, check_model_dir, load_policy, load_tokenizer, resolve_dtype
from lengthrl.models.tiny import ARCHITECTURES, TinyModelSpec, count_parameters, make_model, save_tiny_random_model
from lengthrl.models.tokenizer import DEFAULT_CHARS, SPECIAL_TOKENS, build_char_tokenizer

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CHARS",
    "DTYPES",
    "SPECIAL_TOKENS",
    "TinyModelSpec",
    "build_char_tokenizer",
    "check_model_dir",
    "count_parameters",
    "load_policy",
    "load_tokenizer",
    "make_model",
    "resolve_dtype",
    "save_tiny_random_model",
]
