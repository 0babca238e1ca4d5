"""DRPO (Decoupled Reward Policy Optimization, Li et al., arXiv 2510.04474): the length preference among
correct responses is normalised inside the correct set only, so a correct answer never gets a negative
learning signal."""

from __future__ import annotations

import torch

from lengthrl.rewards._checks import groups, number
from lengthrl.rewards.registry import REQUIRED, register_length_reward


@register_length_reward(
    "drpo",
    formula="advantage-like, mixed groups only: correct: softmax_{correct}((1 - L/C)/lam); wrong: -1/n_wrong",
    paper="DRPO 2510.04474",
    includes_correctness=True,
    kind="advantage",
)
def drpo(lengths, correct, group_size, *, max_len=REQUIRED, lam=0.1):
    """DRPO decoupled weights (Li et al., arXiv 2510.04474), an *advantage-like* [N] (use it in place of
    group-normalised advantages, as the per-sequence weight of a length-normalised log-likelihood).

    Within each group that has both correct and wrong responses, with C = max_len (the generation cap)
    and the length reward r_i = 1 - L_i/C:

        correct i:  A_i = w_i = exp(r_i/lam) / sum_{j correct} exp(r_j/lam)      (sums to 1, all > 0)
        wrong i:    A_i = -1 / n_wrong                                         (sums to -1)

    w is the closed-form optimum of "maximise the length reward of the positive distribution under a KL
    to the current policy" (the paper's P*), evaluated on the sampled correct responses; lam = 0.1 (paper
    and released scripts). Positives and negatives are normalised apart, so a long correct answer gets a
    small positive weight, never a negative one (GRPO with a length-penalised reward can make it negative).
    Groups that are all correct or all wrong get 0, as in the released code. The negatives' weight there is
    softmax(score/tau) over the wrong responses (DisCO, tau = 10); at equal scores it is the uniform
    -1/n_wrong used here, which depends on lengths and correctness only.
    """
    C = number(max_len, "max_len", lo=0, lo_open=True)
    lam = number(lam, "lam", lo=0, lo_open=True)
    L = groups(lengths, group_size)  # [P, G]
    c = groups(correct, group_size) > 0
    mixed = c.any(dim=1, keepdim=True) & (~c).any(dim=1, keepdim=True)  # [P, 1]
    logits = torch.where(c, (1 - L / C) / lam, torch.full_like(L, -torch.inf))
    w = torch.softmax(torch.where(mixed, logits, torch.zeros_like(L)), dim=1)  # [P, G]
    n_wrong = (~c).sum(dim=1, keepdim=True).clamp_min(1).to(L.dtype)
    a = torch.where(c, w, -1.0 / n_wrong)
    return torch.where(mixed, a, torch.zeros_like(a)).reshape(-1)
