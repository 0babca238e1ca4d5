"""The diffusion organism: a small bidirectional transformer masked LM with a mask token.

The organism is a `transformers.BertForMaskedLM` with a tiny config (bidirectional attention, one prediction per
position), saved as a plain local directory (``config.json`` + ``model.safetensors`` + tokenizer files) and
loaded back with ``from_pretrained``. Nothing else in `lengthrl.dllm` depends on BERT: every function takes any
module whose ``forward(input_ids)`` returns ``.logits`` [b, n, V] together with a ``mask_token_id`` (a local LLaDA
checkpoint, mask id 126336, loaded with ``trust_remote_code=True``, plugs in through `load_diffusion_model`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from lengthrl.errors import ConfigError, DataError

#: name of the small JSON file, beside config.json, that records the mask id and special tokens
DLLM_META = "lengthrl_dllm.json"
MASK, PAD, EOS, UNK = "<mask>", "<pad>", "<eos>", "<unk>"


@dataclass
class TinyDiffusionConfig:
    """Size of the organism's transformer (defaults: ~60k parameters, trains in minutes on 2 CPU cores)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_positions: int = 64


DEFAULT_ALPHABET = "0123456789+-*=() ,.:?abcdefghijklmnopqrstuvwxyzQA"


def char_tokenizer(alphabet: str = DEFAULT_ALPHABET) -> PreTrainedTokenizerFast:
    """A character-level `PreTrainedTokenizerFast` with pad, eos, unk and mask tokens (ids 0..3).

    Any `PreTrainedTokenizerFast` with a mask token works with `lengthrl.dllm`; this one keeps tests and the
    organism self-contained (no download)."""
    chars = list(dict.fromkeys(alphabet))
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, MASK] + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()  # decode to the characters, no spaces between them
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, mask_token=MASK,
        clean_up_tokenization_spaces=False,
    )


def char_tokenizer_for(texts) -> PreTrainedTokenizerFast:
    """`char_tokenizer` over the default alphabet plus every other character found in `texts`."""
    extra = sorted({c for t in texts for c in t} - set(DEFAULT_ALPHABET))
    return char_tokenizer(DEFAULT_ALPHABET + "".join(extra))


def check_tokenizer(tokenizer) -> None:
    """Raise ConfigError unless `tokenizer` has mask, eos and pad tokens (the diffusion code needs all three)."""
    for field in ("mask_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, field, None) is None:
            raise ConfigError(
                f"tokenizer has no {field.removesuffix('_id')}; add one, e.g. "
                f"tokenizer.add_special_tokens({{'{field.removesuffix('_token_id')}_token': '<...>'}})"
            )


def tiny_diffusion_model(tokenizer, cfg: TinyDiffusionConfig | None = None, seed: int = 0) -> BertForMaskedLM:
    """A freshly initialised bidirectional masked LM sized by `cfg`, vocabulary from `tokenizer` (no dropout)."""
    check_tokenizer(tokenizer)
    cfg = cfg or TinyDiffusionConfig()
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"hidden_size {cfg.hidden_size} must be a multiple of num_heads {cfg.num_heads}")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_positions, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id, type_vocab_size=1,
    )
    return BertForMaskedLM(config).eval()


def save_diffusion_model(model, tokenizer, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write `model` (safetensors) + `tokenizer` + the mask id to `out_dir`; returns the directory."""
    check_tokenizer(tokenizer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {"mask_token_id": tokenizer.mask_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id, **(extra or {})}
    (out / DLLM_META).write_text(json.dumps(meta, indent=1))
    return out


@dataclass
class LoadedDiffusionModel:
    """A loaded diffusion LM: the module, its tokenizer, the mask id and the metadata saved with it."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerFast
    mask_token_id: int
    meta: dict


def load_diffusion_model(path: str | Path, mask_token_id: int | None = None,
                         trust_remote_code: bool = False) -> LoadedDiffusionModel:
    """Load a diffusion LM directory with ``from_pretrained``.

    Our organism directories carry their mask id in ``lengthrl_dllm.json``. For another checkpoint pass
    `mask_token_id` (LLaDA: 126336) and, for custom model code, ``trust_remote_code=True``; the model is loaded
    with ``AutoModelForMaskedLM`` and, failing that, ``AutoModel`` (LLaDA registers its class under AutoModel)."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise DataError(f"{p}: no config.json; pass a directory written by save_diffusion_model or a checkpoint dir")
    meta = json.loads((p / DLLM_META).read_text()) if (p / DLLM_META).is_file() else {}
    tok = AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code)
    mid = mask_token_id if mask_token_id is not None else meta.get("mask_token_id", tok.mask_token_id)
    if mid is None:
        raise ConfigError(f"{p}: mask_token_id unknown; pass mask_token_id= (LLaDA uses 126336)")
    try:
        model = AutoModelForMaskedLM.from_pretrained(p, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError):
        from transformers import AutoModel

        model = AutoModel.from_pretrained(p, trust_remote_code=trust_remote_code)
    return LoadedDiffusionModel(model=model.eval(), tokenizer=tok, mask_token_id=int(mid), meta=meta)
