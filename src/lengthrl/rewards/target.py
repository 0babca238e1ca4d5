"""Rewards toward a length target given in the prompt: L1 exact and max (LCPO), Ruler length buckets and a
LongWriter-style target range. `target` may be one number or a [N] tensor (one target per response)."""

from __future__ import annotations

import torch

from lengthrl.errors import ConfigError
from lengthrl.rewards._checks import number, per_sample
from lengthrl.rewards.registry import REQUIRED, register_length_reward

# Ruler (arXiv 2409.18943, released config): meta length targets and their scoring ranges (lo, hi], in words.
# "flexible" (FM) ranges tile the line, so they act as buckets; "precise" (PM) ranges are tighter windows.
RULER_FM_EDGES = (20, 40, 60, 100, 200, 400, 600, 800)
RULER_PM = {10: (0, 20), 30: (20, 40), 50: (40, 60), 80: (70, 90), 150: (130, 170), 300: (280, 320),
            500: (450, 550), 700: (630, 770)}  # and any target > 800 -> (800, inf)
RULER_MATCH = ("flexible", "precise")


@register_length_reward(
    "l1_exact",
    formula="c - alpha*|target - L|",
    paper="L1 / LCPO-Exact 2503.04697",
    includes_correctness=True,
)
def l1_exact(lengths, correct, group_size, *, target=REQUIRED, alpha=0.0003):
    """L1 LCPO-Exact (Aggarwal & Welleck, arXiv 2503.04697, eq. 2): the prompt asks for n_gold tokens.

        r = 1{correct} - alpha * |n_gold - n_y|,   alpha = 0.0003 (paper)

    Peaks at n_y = n_gold for either correctness; a wrong answer at the target still scores below a
    correct one at up to 1/alpha tokens off. Not monotone: it pulls lengths toward the target from both sides.
    """
    t = per_sample(target, lengths.numel(), "target")
    alpha = number(alpha, "alpha", lo=0)
    return correct - alpha * (t - lengths).abs()


@register_length_reward(
    "l1_max",
    formula="c * clip(alpha*(target - L) + delta, 0, 1)",
    paper="L1 / LCPO-Max 2503.04697",
    includes_correctness=True,
)
def l1_max(lengths, correct, group_size, *, target=REQUIRED, alpha=0.001, delta=0.5):
    """L1 LCPO-Max (arXiv 2503.04697, eq. 3): the target is a budget, shorter is allowed.

        r = 1{correct} * clip(alpha * (n_gold - n_y) + delta, 0, 1)

    delta = 0.5: a correct answer exactly at the budget gets 0.5, shorter gets more (up to 1), longer less,
    down to 0 at n_gold + delta/alpha tokens. alpha = 1/1000 reproduces the released L1 training code
    ((clip((n_gold - n_y)/500, -1, 1) + 1)/2). Non-increasing in length.
    """
    t = per_sample(target, lengths.numel(), "target")
    alpha = number(alpha, "alpha", lo=0)
    delta = number(delta, "delta")
    return correct * (alpha * (t - lengths) + delta).clamp(0.0, 1.0)


def _edges(edges, field: str = "edges") -> torch.Tensor:
    try:
        e = torch.as_tensor(edges, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{field} = {edges!r}; pass an increasing list of bucket edges") from None
    if e.numel() == 0 or not torch.isfinite(e).all() or (e <= 0).any() or (e[1:] <= e[:-1]).any():
        raise ConfigError(f"{field} = {edges!r}; pass a non-empty, strictly increasing list of positive edges")
    return e


def _ruler_precise(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = torch.empty_like(t), torch.empty_like(t)
    for i, v in enumerate(t.tolist()):
        if v > 800:
            lo[i], hi[i] = 800.0, float("inf")
        elif v in RULER_PM:
            lo[i], hi[i] = RULER_PM[int(v)]
        else:
            raise ConfigError(
                f"ruler: target {v:g} has no precise-match range; use one of {', '.join(map(str, RULER_PM))} "
                "or > 800, or match='flexible'"
            )
    return lo, hi


@register_length_reward(
    "ruler",
    formula="1 if L in the target's range (lo, hi] else 0; flexible: buckets split at 20/40/60/100/200/400/600/800",
    paper="Ruler 2409.18943",
    includes_correctness=False,
)
def ruler(lengths, correct, group_size, *, target=REQUIRED, match="flexible", edges=RULER_FM_EDGES):
    """Ruler target-length scoring (Li et al., arXiv 2409.18943): the prompt carries a meta length token
    (target); the response scores 1 if its length falls in the target's range, else 0.

        match="flexible" (FM): buckets (0, e_1], (e_1, e_2], ..., (e_k, inf) with the paper's edges
            20/40/60/100/200/400/600/800; r = 1{bucket(L) == bucket(target)}
        match="precise" (PM): the paper's tighter window for each target: 10:(0,20] 30:(20,40] 50:(40,60]
            80:(70,90] 150:(130,170] 300:(280,320] 500:(450,550] 700:(630,770] >800:(800,inf)

    The paper counts words; here the unit is whatever `lengths` counts (tokens by default), so scale the
    edges for words-per-token if needed. Correctness is ignored (add a correctness term if wanted).
    Not monotone: it rewards the target's range only.
    """
    t = per_sample(target, lengths.numel(), "target", positive=True)
    if match not in RULER_MATCH:
        raise ConfigError(f"ruler: match = {match!r}; valid: {', '.join(RULER_MATCH)}")
    if match == "precise":
        lo, hi = _ruler_precise(t)
        return ((lengths > lo) & (lengths <= hi)).to(torch.float64)
    e = _edges(edges)
    return (torch.bucketize(lengths, e) == torch.bucketize(t, e)).to(torch.float64)


@register_length_reward(
    "longwriter",
    formula="1 if lo <= L <= hi; L/lo below; linear to 0 at max_len above",
    paper="LongWriter-Zero 2506.18841",
    includes_correctness=False,
)
def longwriter(lengths, correct, group_size, *, lo=REQUIRED, hi=REQUIRED, max_len=REQUIRED):
    """LongWriter-Zero-style length reward (Wu et al., arXiv 2506.18841): highest inside a target range.

        r = 1                                   if lo <= L <= hi
          = L / lo                              if L < lo
          = max(0, 1 - (L - hi)/(max_len - hi)) if L > hi

    The paper predicts [lo, hi] per query and rewards lengths inside it; the linear ramps outside are our
    reading of "highest inside the range". `lo`, `hi` may be per-sample. Correctness is ignored.
    """
    n = lengths.numel()
    lo_t = per_sample(lo, n, "lo", positive=True)
    hi_t = per_sample(hi, n, "hi", positive=True)
    if (hi_t < lo_t).any():
        raise ConfigError("longwriter: hi must be >= lo for every response")
    max_len = number(max_len, "max_len", lo=0, lo_open=True)
    if (hi_t >= max_len).any():
        raise ConfigError(f"longwriter: hi must be < max_len = {max_len:g}")
    below = lengths / lo_t
    above = (1 - (lengths - hi_t) / (max_len - hi_t)).clamp_min(0.0)
    return torch.where(lengths < lo_t, below, torch.where(lengths > hi_t, above, torch.ones_like(lengths)))
