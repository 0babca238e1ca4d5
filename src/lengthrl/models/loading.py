"""Load a policy (model + tokenizer) from a local transformers directory: the organism and a user's model
take exactly the same path (`AutoModelForCausalLM` / `AutoTokenizer`)."""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from transformers.utils import logging as hf_logging

from lengthrl.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# tokenizer classes that mean "exactly what tokenizer.json says"
_GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@contextlib.contextmanager
def quiet_progress():
    """Hide transformers' per-file progress bars (loading a tiny model should print nothing)."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name ("float32", "bfloat16", "float16") or itself."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; valid: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_model_dir(model_dir: str | Path) -> Path:
    """The directory as a Path, or a ConfigError saying what is missing from it."""
    path = Path(model_dir).expanduser()
    hint = "give a local directory with config.json, model weights (*.safetensors) and tokenizer files, e.g. one written by `lengthrl organism --out DIR`"
    if not path.exists():
        raise ConfigError(f"model_dir {str(path)!r} does not exist (models are loaded from local directories only); {hint}")
    if not path.is_dir():
        raise ConfigError(f"model_dir {str(path)!r} is a file, not a model directory; {hint}")
    if not any((path / f).is_file() for f in _WEIGHT_FILES) and (path / "adapter").is_dir():
        raise ConfigError(f"model_dir {str(path)!r} holds a LoRA adapter only ({str(path / 'adapter')!r}); train "
                          "with merge_lora = true for a merged model there, or load the adapter onto its base "
                          "model with peft (PeftModel.from_pretrained)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"model_dir {str(path)!r} is not a model directory: no config.json; {hint}")
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise ConfigError(f"model_dir {str(path)!r} has no weights (none of {', '.join(_WEIGHT_FILES)}); {hint}")
    return path


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerBase:
    """The directory's tokenizer, with a pad token (EOS reused when it has none) and left padding."""
    path = check_model_dir(model_dir)
    # AutoTokenizer replaces a generic tokenizer.json by the model type's own class for some types (qwen2:
    # byte-level pre-tokenizer), which would silently change a custom tokenizer; honour the declared class.
    declared = None
    cfg_file = path / "tokenizer_config.json"
    if cfg_file.is_file():
        try:
            declared = json.loads(cfg_file.read_text()).get("tokenizer_class")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{cfg_file}: not valid JSON ({e}); re-save the tokenizer") from None
    loader = PreTrainedTokenizerFast if declared in _GENERIC_TOKENIZER_CLASSES and (path / "tokenizer.json").is_file() else AutoTokenizer
    try:
        tok = loader.from_pretrained(str(path))
    except Exception as e:  # transformers raises many kinds here
        raise ConfigError(f"model_dir {str(path)!r}: cannot load its tokenizer ({type(e).__name__}: {e}); "
                          f"save one there with tokenizer.save_pretrained(DIR)") from None
    if tok.eos_token_id is None:
        raise ConfigError(f"model_dir {str(path)!r}: the tokenizer has no eos_token; set one in tokenizer_config.json "
                          f"(responses end at EOS)")
    if tok.pad_token_id is None:
        warnings.warn(f"tokenizer of {str(path)!r} has no pad token; using its eos token {tok.eos_token!r} as pad "
                      f"(responses still keep their EOS in the loss)", stacklevel=2)
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _check_weight_shapes(path: Path) -> None:
    """ConfigError naming the first tensor whose shape in the safetensors files differs from the one config.json
    implies (transformers would print a report and raise). Checked on a meta-device model: no memory, no
    weights read. A directory this check cannot read is left to transformers."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return
    try:
        from safetensors import safe_open
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    shape = tuple(st.get_slice(key).get_shape())
                    want = expected.get(key)
                    if want is not None and want != shape:
                        mismatch = (f.name, key, shape, want)
                        break
                else:
                    continue
                break
        else:
            return
    except Exception:  # noqa: BLE001 (an unusual layout: transformers reports it)
        return
    name, key, shape, want = mismatch
    raise ConfigError(f"model_dir {str(path)!r}: {name} holds {key} of shape {list(shape)} but config.json implies "
                      f"{list(want)}; the weights do not belong to this config (re-save the model or fix config.json)")


def load_policy(
    model_dir: str | Path, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `(model, tokenizer)` from a local directory through `AutoModelForCausalLM` / `AutoTokenizer`.

    `attn_implementation`: transformers' attention ('sdpa', 'eager', 'flash_attention_2'); None = its default.

    The tokenizer always has a pad token (EOS when it had none, with a warning) and pads on the left; the
    model's config and generation config get the tokenizer's pad/eos ids. The model is returned in eval mode.
    """
    torch_dtype = resolve_dtype(dtype)
    tok = load_tokenizer(model_dir)
    path = Path(model_dir).expanduser()
    _check_weight_shapes(path)
    try:
        with quiet_progress():
            attn = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, **attn)
    except Exception as e:
        raise ConfigError(f"model_dir {str(path)!r}: cannot load a causal LM from it ({type(e).__name__}: {e}); "
                          f"it must hold a transformers model of a causal-LM architecture") from None
    n_emb = model.get_input_embeddings().weight.shape[0]
    if len(tok) > n_emb:
        raise ConfigError(f"model_dir {str(path)!r}: tokenizer has {len(tok)} tokens but the model embeds only {n_emb}; "
                          f"the tokenizer does not belong to this model (or call model.resize_token_embeddings)")
    model.config.pad_token_id = tok.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
        if model.generation_config.eos_token_id is None:
            model.generation_config.eos_token_id = tok.eos_token_id
    model.to(device)
    model.eval()
    return model, tok
