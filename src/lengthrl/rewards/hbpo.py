"""HBPO (Hierarchical Budget Policy Optimization, Lyu et al., arXiv 2507.15844): budget sub-groups inside each
group, a piecewise budget-aware reward and an advantage that mixes within- and across-budget terms."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lengthrl.errors import ConfigError
from lengthrl.rewards._checks import as_values, check_group_size, groups, number, per_sample
from lengthrl.rewards.registry import REQUIRED, register_length_reward

HBPO_BUDGETS = (512, 1024, 2048, 2560)  # paper: 16 rollouts, 4 sub-groups of 4


def _f2(b: torch.Tensor, beta: float, max_len: float) -> torch.Tensor:
    return beta * torch.cos(math.pi * b / (2 * max_len))


@register_length_reward(
    "hbpo",
    formula="b = target; correct, L <= b: beta*cos(pi*b/(2Lmax)); correct, b < L <= Lmax: beta*cos(pi*L/(2Lmax)) - alpha*|L-b|; else 0",
    paper="HBPO 2507.15844",
    includes_correctness=True,
)
def hbpo(lengths, correct, group_size, *, target=REQUIRED, max_len=4096, beta=4.0, alpha=None):
    """HBPO budget-aware reward (arXiv 2507.15844, eqs. 1-3). Each response was generated under a token
    budget b told in the prompt ("I will answer the question within b tokens"):

        f1(n, b) = beta * cos(pi n / (2 L_max)) - alpha * |n - b|
        f2(b)    = beta * cos(pi b / (2 L_max))
        R(n | b) = f2(b)      if correct, n <= b and n <= L_max
                 = f1(n, b)   if correct, b < n <= L_max
                 = 0          otherwise

    Paper settings: budgets 512/1024/2048/2560 (use `hbpo_budgets`), L_max = 4096 (training context),
    alpha = 1/L_max (None here means that), beta = 4 (the value in the released code; the paper only
    calls it a scaling factor). Within its budget a response is not pushed shorter (flat f2), beyond it
    the reward falls; smaller budgets pay more for short answers. The released code takes
    min(f1, f2) inside the budget, which equals f2 except where the cosine slope is below alpha; we follow
    the paper's equation. `target` is the budget b of each response (Sample.target_len), a number or a
    [N] tensor (sub-groups of one group have different budgets: see `hbpo_budgets`).
    """
    n = lengths.numel()
    b = per_sample(target, n, "target", positive=True)
    T = number(max_len, "max_len", lo=0, lo_open=True)
    beta = number(beta, "beta")
    a = 1.0 / T if alpha is None else number(alpha, "alpha", lo=0)
    f1 = beta * torch.cos(math.pi * lengths / (2 * T)) - a * (lengths - b).abs()
    r = torch.where(lengths <= b, _f2(b, beta, T), f1)
    return torch.where((correct > 0) & (lengths <= T), r, torch.zeros_like(r))


def hbpo_budgets(n: int, group_size: int, budgets: Sequence[float] = HBPO_BUDGETS) -> torch.Tensor:
    """[N] budget per response: each group of `group_size` is cut into len(budgets) equal contiguous
    sub-groups, sub-group i getting budgets[i] (the paper: 16 rollouts -> 4 x 4)."""
    g = check_group_size(n, group_size)
    k = len(budgets)
    if k == 0 or g % k:
        raise ConfigError(f"budgets: {k} budgets do not split group_size = {g} evenly; pass a group size divisible by {k}")
    b = torch.as_tensor([float(x) for x in budgets], dtype=torch.float64)
    if (b <= 0).any():
        raise ConfigError("budgets must be positive token counts")
    return b.repeat_interleave(g // k).repeat(n // g)


def hbpo_advantages(rewards, budget, group_size: int, *, max_len: float = 4096, beta: float = 4.0,
                    eps: float = 1e-6) -> torch.Tensor:
    """HBPO advantage (arXiv 2507.15844, Algorithm 1), [N]: the advantage estimator `hbpo` of
    `lengthrl.advantages` (config `advantage = "hbpo"`):

        A_intra(i) = mean_{j in sub-group i} R_j - f2(b_i)        (sub-group = same prompt, same budget)
        A_inter(j) = (R_j - mean_group R) / (std_group R + eps)   (population std over the whole group)
        A_j = A_intra(sub-group of j) + A_inter(j)
    """
    from lengthrl.advantages import compute_advantages

    r = as_values(rewards, None, "rewards")  # [N]
    check_group_size(r.numel(), group_size)
    b = per_sample(budget, r.numel(), "budget", positive=True)
    T = number(max_len, "max_len", lo=0, lo_open=True)
    return compute_advantages("hbpo", r, group_size, budget=b, max_len=T, beta=number(beta, "beta"), eps=eps)
