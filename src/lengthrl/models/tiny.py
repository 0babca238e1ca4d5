"""Tiny transformers models of standard architectures (Qwen2, Llama), saved as ordinary local model directories.

The organism and a user's model go through the same `AutoModelForCausalLM.from_pretrained(dir)` /
`AutoTokenizer.from_pretrained(dir)` path; `save_tiny_random_model` writes such a directory (safetensors +
config + tokenizer files) with random weights, for tests and as the starting point of the organism.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from lengthrl.errors import ConfigError
from lengthrl.models.loading import quiet_progress
from lengthrl.models.tokenizer import build_char_tokenizer
from lengthrl.registry import Registry

# architecture name -> (config class, model class)
ARCHITECTURES: Registry[tuple[type, type]] = Registry("architecture")
ARCHITECTURES.register("qwen2", (Qwen2Config, Qwen2ForCausalLM))
ARCHITECTURES.register("llama", (LlamaConfig, LlamaForCausalLM))


@dataclass
class TinyModelSpec:
    """Shape of a tiny decoder-only transformer. Defaults give ~0.8M parameters with the char tokenizer."""

    arch: str = "llama"
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True

    def validate(self) -> None:
        """Raise ConfigError naming the field when the shape is impossible."""
        ARCHITECTURES[self.arch]  # unknown arch -> error listing the valid ones
        for f in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "max_position_embeddings"):
            if int(getattr(self, f)) < 1:
                raise ConfigError(f"model spec: {f} must be >= 1, got {getattr(self, f)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"model spec: hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model spec: num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads})")


def make_model(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised causal LM of `spec.arch`, sized for `tokenizer` (vocab and special ids)."""
    spec.validate()
    config_cls, model_cls = ARCHITECTURES[spec.arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.generation_config, key, getattr(config, key))
    return model


def save_tiny_random_model(
    out_dir: str | Path,
    arch: str = "llama",
    seed: int = 0,
    tokenizer: PreTrainedTokenizerBase | None = None,
    pad_is_eos: bool = False,
    **spec_overrides,
) -> Path:
    """Write a tiny random `arch` model + tokenizer to `out_dir` (safetensors); returns the directory.

    `pad_is_eos=True` saves a tokenizer whose pad token is its EOS token (as many released models do).
    `spec_overrides` are fields of `TinyModelSpec` (hidden_size, num_layers, ...).
    """
    bad = sorted(set(spec_overrides) - set(asdict(TinyModelSpec())))
    if bad:
        raise ConfigError(f"save_tiny_random_model: unknown model spec field(s) {bad}; valid: {sorted(asdict(TinyModelSpec()))}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else build_char_tokenizer()
    if pad_is_eos:
        tok.pad_token = tok.eos_token
    model = make_model(TinyModelSpec(arch=arch, **spec_overrides), tok, seed=seed)
    with quiet_progress():
        model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
