"""Measure what a length reward does to length: the direction in which the GRPO policy gradient built on
it pushes response length, on a synthetic batch where correctness does not depend on length."""

from __future__ import annotations

import torch

from lengthrl.rewards._checks import as_lengths, as_values, check_group_size, groups
from lengthrl.rewards.hbpo import hbpo_budgets
from lengthrl.rewards.registry import LENGTH_REWARDS, length_reward


def length_pressure(advantages, lengths, group_size: int) -> float:
    """Mean over groups of cov(A, L) / mean(L): the first-order push of a policy-gradient step on the
    group's mean length (> 0: longer, < 0: shorter), in units of relative length per unit advantage.

        pressure = mean_g [ (1/G) sum_i A_i (L_i - mean_g L) / mean_g L ]
    """
    L = as_lengths(lengths)
    a = as_values(advantages, L.numel(), "advantages")
    g = check_group_size(L.numel(), group_size)
    Lg, ag = groups(L, g), groups(a, g)
    mean = Lg.mean(dim=1, keepdim=True)
    cov = (ag * (Lg - mean)).mean(dim=1) / mean.squeeze(1).clamp_min(1.0)
    return float(cov.mean())


def grpo_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Group z-score (GRPO, arXiv 2402.03300): (R - mean_g R) / (std_g R + eps), [N]."""
    r = groups(rewards.to(torch.float64), group_size)
    return ((r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, unbiased=False, keepdim=True) + eps)).reshape(-1)


def probe_hparams(max_len: int, n: int, group_size: int) -> dict[str, dict[str, object]]:
    """Hyperparameters giving every registered reward the same cap `max_len` on a probe batch."""
    return {
        "dapo_overlong": {"max_len": max_len, "cache_len": max_len // 4},
        "dler": {"max_len": max_len},
        "hapo": {"history": max_len // 2},
        "hbpo": {"target": hbpo_budgets(n, group_size, (max_len // 8, max_len // 4, max_len // 2, 3 * max_len // 4)),
                 "max_len": max_len},
        "l1_exact": {"target": max_len // 2},
        "l1_max": {"target": max_len // 2, "alpha": 4.0 / max_len},
        "ruler": {"target": max_len // 2, "edges": (max_len // 4, max_len // 2 + max_len // 8, max_len)},
        "longwriter": {"lo": max_len // 4, "hi": max_len // 2, "max_len": max_len},
        "cosine": {"max_len": max_len},
        "surrogate": {"max_len": max_len},
        "drpo": {"max_len": max_len},
    }


def probe(prompts: int = 256, group_size: int = 8, max_len: int = 256, p_correct: float = 0.6,
          seed: int = 0) -> list[dict[str, float]]:
    """For every registered reward, on a batch with lengths ~ U{1..max_len+max_len/8} (some over the cap)
    and correctness ~ Bernoulli(p_correct) independent of length: the length pressure of GRPO advantages
    of the reward (DRPO: its own advantage-like weights), overall and split by correctness."""
    gen = torch.Generator().manual_seed(seed)
    n = prompts * group_size
    L = torch.randint(1, max_len + max_len // 8 + 1, (n,), generator=gen)
    c = (torch.rand(n, generator=gen) < p_correct).to(torch.float64)
    hps = probe_hparams(max_len, n, group_size)
    rows = []
    for name, spec in LENGTH_REWARDS.items():
        r = length_reward(name, L, c, group_size, **hps.get(name, {})).to(torch.float64)
        a = r if spec.kind == "advantage" else grpo_advantages(r, group_size)
        rows.append({
            "name": name,
            "pressure": length_pressure(a, L, group_size),
            "pressure_correct": length_pressure(a * c, L, group_size),
            "pressure_wrong": length_pressure(a * (1 - c), L, group_size),
            "mean_reward": float(r.mean()),
        })
    return rows
