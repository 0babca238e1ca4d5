"""The audit's probe batch and how a gradient on it is read (shared by `lengthrl.analysis.audit` and
`lengthrl.analysis.drift`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lengthrl.errors import ConfigError

# per-token weight at ratio 1 of a token-level term (-A·ratio) under each aggregation, for the `aggs` rows:
# (formula, fn(A, B, |y|, T_tot, L_max, P, T_p))
AGG_WEIGHTS = {
    "token-mean": ("A_i / T_tot", lambda A, B, n, T, Lm, P, Tp: A / T),
    "token-sum": ("A_i", lambda A, B, n, T, Lm, P, Tp: A),
    "seq-mean-token-sum": ("A_i / B'", lambda A, B, n, T, Lm, P, Tp: A / B),
    "seq-mean-token-mean": ("A_i / (B'·|y_i|)", lambda A, B, n, T, Lm, P, Tp: A / (B * n)),
    "seq-mean-token-sum-norm": ("A_i / (B'·L_max)", lambda A, B, n, T, Lm, P, Tp: A / (B * Lm)),
    "prompt-mean": ("A_i / (P·T_p)", lambda A, B, n, T, Lm, P, Tp: A / (P * Tp)),
}


@dataclass(frozen=True)
class Probe:
    """The audit's batch: one response per (length, advantage) case, B = len(cases) rows, T = longest length;
    groups of len(advantages) consecutive rows (each length's responses form a group)."""

    cases: list[tuple[int, float]]  # [(|y|, A)] in row order
    mask: torch.Tensor  # [B, T] float64
    advantages: torch.Tensor  # [B] float64
    logp: torch.Tensor  # [B, T] float64 log-probs in (-3, 0] (ratio 1: logp = old_logp)
    group_size: int


def probe_batch(lengths: tuple[int, ...] = (8, 64), advantages: tuple[float, ...] = (1.0, -1.0),
                seed: int = 0) -> Probe:
    """The probe batch of `audit` (and of the framework drift audit)."""
    if not lengths or min(lengths) < 1:
        raise ConfigError(f"audit: lengths must be positive integers, got {lengths}")
    cases = [(L, a) for L in lengths for a in advantages]
    B, T = len(cases), max(lengths)
    mask = torch.zeros(B, T, dtype=torch.float64)
    for i, (L, _) in enumerate(cases):
        mask[i, :L] = 1.0
    adv = torch.tensor([a for _, a in cases], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    base = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3.0  # log-probs in (-3, 0]
    return Probe(cases, mask, adv, base, len(advantages))


def token_weights(grad: torch.Tensor, probe: Probe) -> list[tuple[float, float, bool]]:
    """Per response of the probe: (mean per-token weight w = -dL/dlogp over its tokens, spread max - min of w
    over them, True when no weight leaked onto its padding)."""
    w = -grad
    out = []
    for i, (L, _) in enumerate(probe.cases):
        wi = w[i, :L]
        pad_ok = float(w[i, L:].abs().max()) == 0.0 if L < w.shape[1] else True
        out.append((float(wi.mean()), float(wi.max() - wi.min()), pad_ok))
    return out
