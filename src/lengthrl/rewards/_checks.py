"""Input checks shared by the length rewards: every bad input becomes a DataError/ConfigError that names the
field and the fix, instead of a shape error from deep inside torch."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch

from lengthrl.errors import ConfigError, DataError

TensorLike = torch.Tensor | Sequence[float] | Sequence[int] | Sequence[bool]


def _as_1d(x: object, field: str) -> torch.Tensor:
    """Any list / numpy array / tensor -> a 1-D CPU tensor, or a DataError naming `field`."""
    try:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{field}: cannot be read as a 1-D tensor ({e}); pass a list or a [N] tensor") from None
    if t.dim() != 1:
        raise DataError(f"{field}: expected a 1-D [N] tensor, got shape {tuple(t.shape)}; flatten it first")
    if t.numel() == 0:
        raise DataError(f"{field}: is empty; pass at least one response")
    return t.detach().cpu()


def as_lengths(lengths: object, field: str = "lengths") -> torch.Tensor:
    """Response lengths in tokens -> [N] float64 tensor of non-negative whole numbers."""
    t = _as_1d(lengths, field)
    if t.dtype == torch.bool:
        raise DataError(f"{field}: got a bool tensor; pass token counts (ints)")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        i = int((~torch.isfinite(t)).nonzero()[0])
        raise DataError(f"{field}[{i}] is {t[i].item()}; lengths must be finite token counts")
    if (t < 0).any():
        i = int((t < 0).nonzero()[0])
        raise DataError(f"{field}[{i}] = {t[i].item():g} is negative; lengths are token counts >= 0")
    if (t != t.round()).any():
        i = int((t != t.round()).nonzero()[0])
        raise DataError(f"{field}[{i}] = {t[i].item():g} is not a whole number; lengths are token counts")
    return t


def as_correct(correct: object, n: int, field: str = "correct") -> torch.Tensor:
    """Correctness flags (bool or 0/1) -> [N] float64 tensor of 0.0 / 1.0."""
    t = _as_1d(correct, field).to(torch.float64)
    if t.numel() != n:
        raise DataError(f"{field}: has {t.numel()} entries but lengths has {n}; pass one flag per response")
    if torch.isnan(t).any():
        i = int(torch.isnan(t).nonzero()[0])
        raise DataError(f"{field}[{i}] is NaN; pass True/False or 1/0")
    bad = (t != 0) & (t != 1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise DataError(f"{field}[{i}] = {t[i].item():g}; correctness must be bool or 0/1")
    return t


def as_values(x: object, n: int | None, field: str) -> torch.Tensor:
    """A per-response float input (rewards, budgets) -> [N] float64 tensor, finite (n=None: any N)."""
    t = _as_1d(x, field).to(torch.float64)
    if n is not None and t.numel() != n:
        raise DataError(f"{field}: has {t.numel()} entries, expected {n} (one per response)")
    if not torch.isfinite(t).all():
        i = int((~torch.isfinite(t)).nonzero()[0])
        raise DataError(f"{field}[{i}] is {t[i].item()}; values must be finite")
    return t


def check_group_size(n: int, group_size: object) -> int:
    """group_size must be a positive int dividing N (groups are contiguous)."""
    try:
        if isinstance(group_size, bool):
            raise TypeError
        group_size = operator.index(group_size)  # int, numpy integer or 0-d integer tensor
    except TypeError:
        raise ConfigError(f"group_size = {group_size!r}; pass a positive int (responses per prompt)") from None
    if group_size <= 0:
        raise ConfigError(f"group_size = {group_size}; it must be >= 1")
    if n % group_size:
        raise ConfigError(
            f"group_size = {group_size} does not divide N = {n}; the batch must be prompts x group_size "
            "with each prompt's responses contiguous"
        )
    return group_size


def per_sample(x: object, n: int, field: str, *, positive: bool = False) -> torch.Tensor:
    """A hyperparameter that may be one number or one value per response -> [N] float64 tensor."""
    if isinstance(x, bool):
        raise ConfigError(f"{field} = {x!r}; pass a number or a [N] tensor")
    if isinstance(x, (int, float)):
        t = torch.full((n,), float(x), dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(x, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"{field} = {x!r}; pass a number or a [N] tensor") from None
        if t.dim() == 0:
            t = t.expand(n).clone()
        elif t.shape != (n,):
            raise ConfigError(f"{field}: has shape {tuple(t.shape)}, expected a number or [{n}] (one per response)")
    if not torch.isfinite(t).all():
        raise ConfigError(f"{field} contains NaN/inf; pass finite values")
    if positive and (t <= 0).any():
        raise ConfigError(f"{field} must be > 0, got {t.min().item():g}")
    return t


def number(x: object, field: str, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    """A scalar hyperparameter -> float, range-checked, or a ConfigError naming it and the valid range."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        if isinstance(x, torch.Tensor) and x.numel() == 1:
            x = x.item()
        else:
            raise ConfigError(f"{field} = {x!r}; pass a number")
    v = float(x)
    if not math.isfinite(v):
        raise ConfigError(f"{field} = {v}; pass a finite number")
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    rng = f"{'(' if lo_open else '['}{lo_s}, {hi_s}{')' if hi_open else ']'}"
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ConfigError(f"{field} = {v:g} is out of range; valid: {rng}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ConfigError(f"{field} = {v:g} is out of range; valid: {rng}")
    return v


def groups(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] -> [N/G, G] view (groups are contiguous)."""
    return x.view(-1, group_size)
