"""LoRA policies through peft (Hu et al. 2021, arXiv 2106.09685): W x + (alpha / r) B A x, A [r, in], B [out, r].

With `lora_r > 0` the trainer wraps the policy with `peft.get_peft_model` (config keys `lora_r`, `lora_alpha`,
`lora_dropout`, `lora_target_modules`); only the adapter's A and B are trainable, optimised and checkpointed
(the base weights are read from `model` again on resume). The KL reference is the same model with its adapters
disabled (`AdapterDisabled`: no second copy of the weights). The lean decoder samples with the adapters merged
into its view of the weights (`merged_weight`, recomputed at every generate call, so each step samples the
current policy); the training forward always goes through the peft model. `final/adapter/` holds the adapter
(`PeftModel.from_pretrained(base, final/adapter)`); with `merge_lora = true`, `final/` also holds the merged
weights, loadable by `AutoModelForCausalLM.from_pretrained(final)` and by `lengthrl eval --model final`.

A 2-step LoRA run needs only the config keys, e.g. `--set lora_r=8 --set lora_alpha=16 --set steps=2`
(`lora_settings` gives them as a dict).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lengthrl.errors import ConfigError

ADAPTER_DIR = "adapter"  # final/adapter: the trained adapter (peft format)


def _peft():
    try:
        import peft
    except ImportError:
        raise ConfigError("config key 'lora_r': LoRA needs the peft package; install lengthrl's 'lora' extra "
                          "(pip install 'lengthrl[lora]') or set lora_r = 0") from None
    return peft


def lora_settings(r: int = 8, alpha: float = 16.0, dropout: float = 0.0, target_modules=None,
                  merge: bool = False) -> dict:
    """The config keys of a LoRA run, as a dict for `build_config(extra=...)` (the GPU check's 2-step run)."""
    out = {"lora_r": r, "lora_alpha": alpha, "lora_dropout": dropout, "merge_lora": merge}
    if target_modules is not None:
        out["lora_target_modules"] = list(target_modules)
    return out


def check_config(cfg) -> None:
    """Validate the lora_* keys (called by `lengthrl.train.validate.validate`); each error names its key."""
    if cfg.lora_r < 0:
        raise ConfigError(f"config key 'lora_r': must be >= 0 (0 = no LoRA), got {cfg.lora_r!r}")
    if cfg.merge_lora and cfg.lora_r == 0:
        raise ConfigError("config key 'merge_lora': there is no adapter to merge with lora_r = 0; set lora_r > 0 "
                          "or merge_lora = false")
    if cfg.lora_r == 0:
        return
    if cfg.policy != "ar":
        raise ConfigError(f"config key 'lora_r': LoRA is supported for policy = 'ar', not {cfg.policy!r}; "
                          "set lora_r = 0 for a diffusion policy")
    if cfg.dist_strategy == "fsdp":  # FSDP2 over a peft model is not supported: refused before anything loads
        raise ConfigError("config key 'lora_r': LoRA runs with dist_strategy = 'ddp' (or one process), not "
                          "'fsdp'; set dist_strategy = 'ddp' or lora_r = 0")
    if not cfg.lora_alpha > 0:
        raise ConfigError(f"config key 'lora_alpha': must be > 0, got {cfg.lora_alpha!r}")
    if not 0 <= cfg.lora_dropout < 1:
        raise ConfigError(f"config key 'lora_dropout': must be in [0, 1), got {cfg.lora_dropout!r}")
    mods = cfg.lora_target_modules
    if not mods or not all(isinstance(m, str) and m for m in mods):
        raise ConfigError(f"config key 'lora_target_modules': a non-empty list of module names (e.g. "
                          f"['q_proj', 'v_proj']), got {mods!r}")


def wrap(model, cfg, adapter_dir: str | Path | None = None):
    """`model` wrapped with a LoRA adapter of the config (peft `get_peft_model`), base weights frozen; with
    `adapter_dir`, the adapter's weights are loaded from there (a checkpoint), bit for bit."""
    peft = _peft()
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [m for m in cfg.lora_target_modules if m not in names]
    if missing:
        raise ConfigError(f"config key 'lora_target_modules': {missing} are not linear layers of this model; "
                          f"its linear layers are {sorted(names)}")
    lcfg = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=list(cfg.lora_target_modules), bias="none", task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, lcfg)
    if adapter_dir is not None:
        from safetensors.torch import load_file

        path = Path(adapter_dir) / "adapter_model.safetensors"
        if not path.is_file():
            raise ConfigError(f"checkpoint {str(adapter_dir)!r} has no adapter_model.safetensors: it was not "
                              "written by a LoRA run; resume it with lora_r = 0")
        res = peft.set_peft_model_state_dict(pm, load_file(str(path)))
        bad = [k for k in getattr(res, "unexpected_keys", []) if "lora_" in k]
        if bad:
            raise ConfigError(f"checkpoint {str(adapter_dir)!r}: its adapter does not fit lora_r / "
                              f"lora_target_modules ({bad[:3]}...); resume with the run's own LoRA settings")
    return pm


def is_adapted(model) -> bool:
    """True when `model` (or the model a DDP wrapper holds) carries peft adapter layers."""
    model = getattr(model, "module", model)
    if not _from_peft(model) and not any(_from_peft(m) for m in model.modules()):
        return False  # (peft is not even imported for a plain model)
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def _from_peft(obj) -> bool:
    return type(obj).__module__.startswith("peft.")


def base_model(model):
    """The transformers model under a peft wrapper (its adapted linears included), or `model` itself."""
    get = getattr(model, "get_base_model", None)
    return get() if get is not None and _from_peft(model) else model


class MergedLinear:
    """What the lean decoder reads of a linear layer: `.weight` and `.bias` (here with the adapter merged)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias


def merged_weight(module):
    """A LoRA-adapted linear as `MergedLinear(W + sum_a delta_a, b)` over its active, unmerged adapters (peft's
    own `get_delta_weight`, no gradient); any other module unchanged."""
    if not _from_peft(module):
        return module
    from peft.tuners.lora import LoraLayer

    if not isinstance(module, LoraLayer):
        return module
    base = module.get_base_layer()
    if getattr(module, "disable_adapters", False) or getattr(module, "merged", False):
        return MergedLinear(base.weight, base.bias)
    with torch.no_grad():
        w = base.weight.detach()
        for name in module.active_adapters:
            if name in module.lora_A:
                w = w + module.get_delta_weight(name).to(w.dtype)
    return MergedLinear(w, base.bias)


class AdapterDisabled:
    """The KL reference of a LoRA policy: the same peft model, called with its adapters disabled and in eval
    mode (no dropout). It holds no weights of its own; `batched_logprobs` / `compute_logprobs` call it like a
    model."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.training = False

    def parameters(self):
        return self.model.parameters()

    def modules(self):
        return self.model.modules()

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    def __call__(self, *args, **kwargs):
        was = self.model.training
        self.model.eval()
        try:
            with self.model.disable_adapter():
                return self.model(*args, **kwargs)
        finally:
            self.model.train(was)


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The base model's state dict with every adapter merged (W + (alpha / r) B A), under its own names (the
    state dict of the plain transformers model), computed without modifying `model`."""
    from peft.tuners.lora import LoraLayer

    base = base_model(model)
    merged = {}
    for name, mod in base.named_modules():
        if isinstance(mod, LoraLayer):
            m = merged_weight(mod)
            merged[f"{name}.weight"] = m.weight.detach().clone()
            if m.bias is not None:
                merged[f"{name}.bias"] = m.bias.detach().clone()
    out = {}
    for k, v in base.state_dict().items():
        if "lora_" in k:
            continue
        plain = k.replace(".base_layer.", ".")
        out[plain] = merged.get(plain, v)
    return out


def save_final(model, tokenizer, out: str | Path, merge: bool) -> None:
    """final/adapter: the adapter (peft format); with `merge`, final/ itself: the merged model (safetensors,
    config, tokenizer), loadable by `AutoModelForCausalLM.from_pretrained(final)`."""
    from lengthrl.models.loading import quiet_progress

    out = Path(out)
    with quiet_progress():
        model.save_pretrained(out / ADAPTER_DIR, safe_serialization=True)
    tokenizer.save_pretrained(out / ADAPTER_DIR)
    if not merge:
        return
    from transformers import AutoModelForCausalLM

    base = base_model(model)
    with torch.device("meta"):  # the architecture without adapter layers, no memory: the merged tensors go in
        plain = AutoModelForCausalLM.from_config(base.config)
    plain.load_state_dict(merged_state_dict(model), strict=True, assign=True)
    with quiet_progress():
        plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
