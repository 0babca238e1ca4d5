"""Where the trainer's tensors live and what precision they compute in, decided once at the start of a run.

Config keys (`lengthrl.train.config`, docs/gpu.md):

- ``device``: "auto" (cuda when available, else cpu), "cpu", "cuda" or "cuda:N". Under torchrun each rank uses
  ``cuda:LOCAL_RANK`` (the index of "cuda:N" is then ignored: one GPU per process).
- ``dtype``: "auto" (bfloat16 on a CUDA device that supports it, else float32), "float32", "bfloat16" or
  "float16". Forwards and backwards compute in it under `torch.autocast`; the parameters the optimizer steps
  (master weights) and the AdamW moments stay float32; log-softmax, ratios and the loss are float32 (the
  log-prob functions upcast the logits). Under FSDP2 the same setting is applied as its
  ``MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=float32)`` instead of autocast.
  float16 adds a dynamic loss scale (`torch.amp.GradScaler`).

On the CPU in float32 nothing is wrapped: a run computes exactly what it did before these keys existed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass

import torch

from lengthrl.errors import ConfigError

DEVICES_HELP = "'auto', 'cpu', 'cuda' or 'cuda:N'"
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def check_device_name(name: str) -> None:
    """ConfigError unless `name` is a valid value of the `device` key (availability is checked later)."""
    if name in ("auto", "cpu", "cuda"):
        return
    if name.startswith("cuda:") and name[5:].isdigit():
        return
    raise ConfigError(f"config key 'device': {name!r} is not a device; valid: {DEVICES_HELP}")


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device of the `device` key. `local_rank`: this process's LOCAL_RANK under torchrun (then a
    CUDA device is ``cuda:LOCAL_RANK``). ConfigError when CUDA is asked for and there is none."""
    check_device_name(name)
    has_cuda = torch.cuda.is_available()
    if name == "cpu" or (name == "auto" and not has_cuda):
        return torch.device("cpu")
    if not has_cuda:
        found = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise ConfigError(f"config key 'device': {name!r} needs CUDA, but {found} (torch {torch.__version__}); "
                          "set device = 'cpu' or 'auto'")
    n = torch.cuda.device_count()
    if local_rank is not None:
        index = local_rank
    else:
        index = int(name[5:]) if name.startswith("cuda:") else torch.cuda.current_device()
    if index >= n:
        raise ConfigError(f"config key 'device': {name!r} (process index {index}) but only {n} CUDA device(s) "
                          "are visible; use a smaller index or fewer processes per node")
    return torch.device("cuda", index)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype of the `dtype` key on `device` ('auto': bfloat16 on CUDA when supported, else
    float32). ConfigError for bfloat16 on a GPU without bfloat16 support."""
    if name not in DTYPE_NAMES:
        raise ConfigError(f"config key 'dtype': {name!r}; valid: {', '.join(DTYPE_NAMES)}")
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"config key 'dtype': 'bfloat16' is not supported by {torch.cuda.get_device_name(device)}; "
                          "use 'float16' or 'float32'")
    return getattr(torch, name)


def effective_dtype_name(dtype: str, fsdp_param_dtype: str | None) -> str:
    """The `dtype` key with the older `fsdp_param_dtype` folded in: `fsdp_param_dtype` is the FSDP2 form of
    the same setting, so it stands for `dtype` when that is 'auto'; two different values are an error."""
    if fsdp_param_dtype is None:
        return dtype
    if dtype not in ("auto", fsdp_param_dtype):
        raise ConfigError(f"config keys 'dtype' ({dtype!r}) and 'fsdp_param_dtype' ({fsdp_param_dtype!r}) disagree; "
                          "fsdp_param_dtype is the FSDP2 form of dtype: set dtype only")
    return fsdp_param_dtype


def check_attn_implementation(name: str) -> None:
    """ConfigError unless `name` is a known attention implementation usable here."""
    if name not in ATTN_IMPLEMENTATIONS:
        raise ConfigError(f"config key 'attn_implementation': {name!r}; valid: {', '.join(ATTN_IMPLEMENTATIONS)}")
    if name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError("config key 'attn_implementation': 'flash_attention_2' needs the flash-attn package, "
                          "which is not installed; use 'sdpa' (the default; PyTorch's SDPA picks flash kernels "
                          "on its own when it can)")


def local_rank() -> int | None:
    """LOCAL_RANK under torchrun with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(os.environ.get("LOCAL_RANK", "0"))


@dataclass(frozen=True)
class Precision:
    """The run's device and compute dtype. `autocast()` is the context forwards (and their backwards) run
    in: `torch.autocast` to `dtype` unless that is float32 or FSDP2 applies it (`fsdp`), else a no-op."""

    device: torch.device
    dtype: torch.dtype
    fsdp: bool = False

    @property
    def mixed(self) -> bool:
        """True when forwards compute below float32 under autocast."""
        return self.dtype != torch.float32 and not self.fsdp

    def autocast(self):
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self):
        """A `torch.amp.GradScaler` for float16 (dynamic loss scale), else None."""
        if self.dtype != torch.float16:
            return None
        return torch.amp.GradScaler(self.device.type)

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def precision_of(cfg, dist=None) -> Precision:
    """The `Precision` of a run's config (`dist`: the `Dist` of the job; FSDP2 applies the dtype itself)."""
    device = resolve_device(cfg.device, local_rank())
    dtype = resolve_dtype(effective_dtype_name(cfg.dtype, cfg.fsdp_param_dtype), device)
    return Precision(device, dtype, fsdp=bool(dist is not None and dist.sharded))


def fsdp_param_dtype(cfg) -> str | None:
    """The FSDP2 `param_dtype` of a config: its compute dtype when below float32 and dist_strategy = 'fsdp'
    (the `dtype` key, or the older `fsdp_param_dtype`), else None."""
    if cfg.dist_strategy != "fsdp":
        return None
    name = effective_dtype_name(cfg.dtype, cfg.fsdp_param_dtype)
    dtype = resolve_dtype(name, resolve_device(cfg.device, local_rank()))
    return None if dtype == torch.float32 else str(dtype).removeprefix("torch.")


def cuda_memory(device: torch.device) -> dict[str, float]:
    """Peak allocated / reserved CUDA memory in GiB since the last reset (empty on the CPU)."""
    if device.type != "cuda":
        return {}
    g = 2.0 ** 30
    return {"cuda_peak_alloc_gib": torch.cuda.max_memory_allocated(device) / g,
            "cuda_peak_reserved_gib": torch.cuda.max_memory_reserved(device) / g}
