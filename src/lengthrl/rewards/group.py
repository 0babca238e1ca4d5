"""Length rewards normalised within each group of responses to the same prompt: Kimi k1.5, Arora & Zanette,
ShorterBetter and GRPO-lambda (which ranks the groups of the whole batch)."""

from __future__ import annotations

import math

import torch

from lengthrl.rewards._checks import groups, number
from lengthrl.rewards.registry import register_length_reward


@register_length_reward(
    "kimi",
    formula="lam = 0.5 - (L - min_g L)/(max_g L - min_g L); correct: lam, wrong: min(0, lam); 0 if all L equal",
    paper="Kimi k1.5 2501.12599",
    includes_correctness=False,
)
def kimi(lengths, correct, group_size):
    """Kimi k1.5 length reward (Kimi Team, arXiv 2501.12599, sec. 2.3.3), within each group:

        lambda_i = 0.5 - (L_i - min_len)/(max_len - min_len)
        r_i = lambda_i if correct else min(0, lambda_i)

    min_len/max_len are over all responses of the group; when they are equal every r_i = 0.
    Range [-0.5, 0.5]; added to the task reward (Kimi warms it up during training; no other hyperparameter).
    Non-increasing in length within a group: the shortest correct answer gets +0.5, the longest -0.5;
    short wrong answers are not rewarded.
    """
    L = groups(lengths, group_size)  # [P, G]
    c = groups(correct, group_size)
    lo = L.min(dim=1, keepdim=True).values  # [P, 1]
    span = L.max(dim=1, keepdim=True).values - lo
    lam = torch.where(span > 0, 0.5 - (L - lo) / span.clamp_min(1e-12), torch.zeros_like(L))  # [P, G]
    r = torch.where(c > 0, lam, lam.clamp_max(0.0))
    return r.reshape(-1)


def _correct_zscore(L: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """[P, G] length z-score against the mean/std (population) of the correct responses of each group.

    z = (L - mean_correct)/std_correct; 0 where the group has < 1 correct response or std_correct = 0.
    """
    n = c.sum(dim=1, keepdim=True)  # [P, 1]
    mean = (L * c).sum(dim=1, keepdim=True) / n.clamp_min(1)
    var = (((L - mean) ** 2) * c).sum(dim=1, keepdim=True) / n.clamp_min(1)
    std = var.sqrt()
    return torch.where(std > 0, (L - mean) / std.clamp_min(1e-12), torch.zeros_like(L))


@register_length_reward(
    "arora_zanette",
    formula="correct: 1 - alpha*sigmoid((L - mean_correct)/std_correct) within the group; wrong: 0",
    paper="Arora & Zanette 2502.04463",
    includes_correctness=True,
)
def arora_zanette(lengths, correct, group_size, *, alpha=0.1):
    """Arora & Zanette, "Training Language Models to Reason Efficiently" (arXiv 2502.04463):

        r_i = 1{correct} * (1 - alpha * sigmoid((L_i - MEAN(x)) / STD(x)))

    MEAN/STD are the mean and (population) standard deviation of the lengths of the *correct* responses
    to the same prompt; if they are all the same length the z-score is 0 (reward 1 - alpha/2). Wrong
    answers get 0. alpha in [0, 1) trades accuracy for length; the paper sweeps it (0 = plain
    correctness) and reports results for several values; 0.1 is the value in the released training
    scripts. The released code divides by (std + 1e-7); here std = 0 gives z = 0, the same value. Every correct answer stays above every wrong one (r > 0). Non-increasing in length.
    """
    alpha = number(alpha, "alpha", lo=0, hi=1, hi_open=True)
    L = groups(lengths, group_size)
    c = groups(correct, group_size)
    z = _correct_zscore(L, c)
    return (c * (1 - alpha * torch.sigmoid(z))).reshape(-1)


@register_length_reward(
    "shorter_better",
    formula="alpha*c - beta*|L - SOL|, SOL = shortest correct L in the group (mean L if none correct)",
    paper="ShorterBetter 2504.21370",
    includes_correctness=True,
)
def shorter_better(lengths, correct, group_size, *, alpha=2.0, beta=0.001):
    """ShorterBetter (Yi et al., arXiv 2504.21370): reward the Sample Optimal Length (SOL).

        SOL = min {L_j : y_j correct}      if the group has a correct response
            = (1/G) sum_j L_j             otherwise
        r_i = alpha * 1{correct} - beta * |L_i - SOL|

    Paper defaults alpha = 2.0 (also 1.0), beta = 0.001. Correct responses longer than SOL lose reward;
    with no correct response the group is pulled toward its mean length, not toward zero.
    """
    alpha = number(alpha, "alpha")
    beta = number(beta, "beta", lo=0)
    L = groups(lengths, group_size)
    c = groups(correct, group_size)
    big = torch.full_like(L, math.inf)
    sol_correct = torch.where(c > 0, L, big).min(dim=1, keepdim=True).values  # [P, 1]
    any_c = c.sum(dim=1, keepdim=True) > 0
    sol = torch.where(any_c, sol_correct, L.mean(dim=1, keepdim=True))
    return (alpha * c - beta * (L - sol).abs()).reshape(-1)


def grpo_lambda_selected(correct: torch.Tensor, group_size: int, lam: float) -> torch.Tensor:
    """[P] bool: the top-`lam` fraction of groups by correctness rate (k = ceil(lam * P) groups).

    Ties are broken by group order (earlier group first), so the selection is deterministic.
    """
    rate = groups(correct, group_size).mean(dim=1)  # [P]
    p = rate.numel()
    k = min(p, math.ceil(lam * p - 1e-9))
    idx = sorted(range(p), key=lambda i: (-float(rate[i]), i))[:k]
    sel = torch.zeros(p, dtype=torch.bool)
    sel[idx] = True
    return sel


@register_length_reward(
    "grpo_lambda",
    formula="top-lam groups by correctness rate: c*(1 - alpha*sigmoid(z_len)); other groups: c",
    paper="GRPO-lambda 2505.18086",
    includes_correctness=True,
)
def grpo_lambda(lengths, correct, group_size, *, lam=0.2, alpha=0.1):
    """GRPO-lambda (Dai et al., "Stable Reinforcement Learning for Efficient Reasoning", arXiv 2505.18086).

    Per batch, rank the groups by correctness rate; the top `lam` fraction (k = ceil(lam * P), ties by
    group order) get the length-penalised reward, the rest plain 0/1:

        r_i = c_i * (1 - alpha * sigmoid(z_i))   in a selected group
        r_i = c_i                                otherwise

    z_i is the length z-score against the correct responses of the group (as in Arora & Zanette, whose
    penalty GRPO-lambda switches on and off). Paper: lam = 0.2; +1.48% accuracy at -47.3% length.
    alpha = 0.1 is the value of the Arora & Zanette release (we could not confirm a GRPO-lambda value).
    The whole batch is needed; `GRPOLambda` wraps this and keeps running statistics.
    """
    lam = number(lam, "lam", lo=0, hi=1, lo_open=True)
    alpha = number(alpha, "alpha", lo=0, hi=1, hi_open=True)
    sel = grpo_lambda_selected(correct, group_size, lam)  # [P]
    L = groups(lengths, group_size)
    c = groups(correct, group_size)
    pen = c * (1 - alpha * torch.sigmoid(_correct_zscore(L, c)))
    return torch.where(sel[:, None], pen, c).reshape(-1)
