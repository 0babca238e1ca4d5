"""Length dynamics of a training run, from its samples.jsonl and metrics.jsonl rows.

- group length spread: per step, the mean over prompt groups of the population std (and range) of the group's
  response lengths. A spread near zero means length can no longer carry any advantage signal.
- length/advantage correlation: per step, the Pearson correlation of response length and advantage over all
  the step's responses. Negative: shorter responses are pushed up (length falls); positive: length grows.
- gradient share: per step, the share of the total gradient weight carried by long responses (length above the
  step's median). The per-token weight w_i of response i comes from `token_weight(lengths, advantages)` (for
  example the weights of a loss's aggregation from the length-bias audit: A_i / (B |y_i|) for grpo,
  A_i / B for luspo); response i carries |w_i| * |y_i| in total.
- entropy trend: least-squares slope of entropy per step and the relative change between the first and last
  windows of the run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lengthrl.analysis.values import as_number
from lengthrl.errors import ConfigError, DataError

TokenWeight = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (lengths [M], advantages [M]) -> weights [M]


def _num(row: Mapping, key: str, i: int, required: bool = True) -> float | None:
    v = row.get(key)
    if v is None and required:
        raise DataError(f"samples row {i}: missing field {key!r}")
    return as_number(v, f"samples row {i}: field {key!r}")


def by_step(samples: Iterable[Mapping], need: Sequence[str] = ("length",)) -> dict[int, list[Mapping]]:
    """Group samples.jsonl rows by `step` (sorted), checking the fields in `need` are numbers."""
    out: dict[int, list[Mapping]] = defaultdict(list)
    for i, row in enumerate(samples):
        step = _num(row, "step", i)
        for key in need:
            _num(row, key, i)
        out[int(step)].append(row)
    return dict(sorted(out.items()))


def group_length_spread(samples: Iterable[Mapping]) -> list[dict[str, Any]]:
    """Per step: {step, n_groups, group_std_mean, group_range_mean} over (step, prompt_id) groups."""
    res = []
    for step, rows in by_step(samples).items():
        groups: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            groups[str(r.get("prompt_id"))].append(float(r["length"]))
        stds = [float(np.std(g)) for g in groups.values()]
        ranges = [max(g) - min(g) for g in groups.values()]
        res.append({"step": step, "n_groups": len(groups), "group_std_mean": float(np.mean(stds)),
                    "group_range_mean": float(np.mean(ranges))})
    return res


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def length_advantage_corr(samples: Iterable[Mapping]) -> list[dict[str, Any]]:
    """Per step: {step, corr} = Pearson(length, advantage) over the step's responses; None if either is constant."""
    res = []
    for step, rows in by_step(samples, ("length", "advantage")).items():
        L = np.array([float(r["length"]) for r in rows])  # [M]
        A = np.array([float(r["advantage"]) for r in rows])  # [M]
        res.append({"step": step, "corr": _pearson(L, A)})
    return res


def gradient_share(samples: Iterable[Mapping], token_weight: TokenWeight) -> list[dict[str, Any]]:
    """Per step: share of gradient weight carried by long responses (length > step median).

    Returns {step, share_long, frac_long, net_long, net_short}: share_long = sum_long |w_i| L_i / sum_all |w_i| L_i
    (None when all weights are 0), frac_long = fraction of responses that are long (the share they would carry
    if weight were spread evenly over responses), net_long / net_short = signed sums sum w_i L_i of each part.
    """
    res = []
    for step, rows in by_step(samples, ("length", "advantage")).items():
        L = np.array([float(r["length"]) for r in rows])  # [M]
        A = np.array([float(r["advantage"]) for r in rows])  # [M]
        w = np.asarray(token_weight(L, A), dtype=np.float64)  # [M] per-token weight of each response
        if w.shape != L.shape:
            raise ConfigError(f"token_weight returned shape {w.shape}; it must return one weight per response {L.shape}")
        if not np.all(np.isfinite(w)):
            raise DataError(f"step {step}: token_weight gave non-finite weights (zero-length responses?)")
        long = L > np.median(L)
        per_resp = w * L  # [M] total signed weight of each response
        total = np.abs(per_resp).sum()
        res.append({"step": step, "share_long": None if total == 0 else float(np.abs(per_resp[long]).sum() / total),
                    "frac_long": float(long.mean()), "net_long": float(per_resp[long].sum()),
                    "net_short": float(per_resp[~long].sum())})
    return res


def entropy_trend(metrics: Sequence[Mapping], key: str = "entropy", window: int = 10) -> dict[str, Any]:
    """{slope (per step, least squares), first (mean of the first `window` values), last, rel_change} of `key`
    over the logged steps; None values when fewer than 2 steps log it."""
    pts = [(float(r.get("step", i)), float(r[key])) for i, r in enumerate(metrics)
           if r.get(key) is not None and not math.isnan(float(r[key]))]
    if len(pts) < 2:
        return {"slope": None, "first": None, "last": None, "rel_change": None, "n": len(pts)}
    x, y = np.array(pts).T  # [n], [n]
    slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else None
    w = max(1, min(window, len(y) // 2))
    first, last = float(y[:w].mean()), float(y[-w:].mean())
    return {"slope": slope, "first": first, "last": last,
            "rel_change": None if first == 0 else (last - first) / abs(first), "n": len(pts)}


def length_dynamics(metrics: Sequence[Mapping], samples: Sequence[Mapping],
                    token_weight: TokenWeight | None = None) -> dict[str, Any]:
    """All of the above for a run (parts whose inputs are missing are left out)."""
    out: dict[str, Any] = {"entropy": entropy_trend(metrics)}
    if samples:
        out["group_spread"] = group_length_spread(samples)
        if all(r.get("advantage") is not None for r in samples):
            out["len_adv_corr"] = length_advantage_corr(samples)
            if token_weight is not None:
                out["gradient_share"] = gradient_share(samples, token_weight)
    return out
