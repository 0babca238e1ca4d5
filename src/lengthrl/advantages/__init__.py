"""Advantage estimators (docs/papers.md section 2): outcome rewards [N] -> advantages [N].

    adv = compute_advantages(name, rewards, group_size, **hparams)

Rewards are grouped contiguously: N = prompts × group_size, responses i·G ... i·G+G-1 answer prompt i.
A group whose rewards are all equal (including a group of one) gets exactly 0, never NaN, with every estimator
but `hbpo`, whose intra-budget term is absolute (it subtracts the budget's f2(b) from the sub-group's mean) and
which takes a per-response input, `budget=[N]` (`AdvantageSpec.per_response`).
"""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lengthrl.errors import ConfigError
from lengthrl.registry import Registry, check_hparams

__all__ = ["compute_advantages", "ADVANTAGES", "AdvantageSpec"]


@dataclass(frozen=True)
class AdvantageSpec:
    name: str
    fn: Callable[..., torch.Tensor]  # (R [P, G], **hp) -> A [P, G]
    hparams: dict[str, float]  # name -> default
    formula: str
    paper: str
    per_response: tuple[str, ...] = ()  # required [N] tensor inputs (e.g. HBPO's budget), passed as [P, G]


ADVANTAGES: Registry[AdvantageSpec] = Registry("advantage estimator")


def _equal_groups(R: torch.Tensor) -> torch.Tensor:  # [P, G] -> [P, 1] bool: all rewards of the group equal
    return (R.max(-1, keepdim=True).values == R.min(-1, keepdim=True).values)


def _centre(R: torch.Tensor) -> torch.Tensor:  # [P, G]: R - group mean, exactly 0 in all-equal groups
    return torch.where(_equal_groups(R), torch.zeros_like(R), R - R.mean(-1, keepdim=True))


def _grpo(R, eps):
    """A_i = (R_i - mean_g R) / (std_g R + eps), sample std (n-1), as GRPO, TRL and verl."""
    G = R.shape[-1]
    std = R.std(-1, keepdim=True) if G > 1 else torch.zeros_like(R[:, :1])
    return torch.where(_equal_groups(R), torch.zeros_like(R), _centre(R) / (std + eps))


def _dr_grpo(R):
    """A_i = R_i - mean_g R (no division by the std: Dr. GRPO)."""
    return _centre(R)


def _batch(R, eps):
    """Group-mean centring, then division by the std of the centred values over the whole batch (DLER,
    REINFORCE++-baseline): A_i = (R_i - mean_g R) / (std_batch(R - mean_g R) + eps)."""
    C = _centre(R)
    std = C.flatten().std() if C.numel() > 1 else torch.zeros((), dtype=R.dtype)
    return torch.where(std > 0, C / (std + eps), torch.zeros_like(C))


def _rloo(R):
    """A_i = R_i - mean_{j != i} R_j = G/(G-1)·(R_i - mean_g R) (leave-one-out baseline, RLOO)."""
    G = R.shape[-1]
    return _centre(R) * (G / (G - 1)) if G > 1 else torch.zeros_like(R)


def _hbpo(R, budget, eps, max_len, beta):
    """HBPO (arXiv 2507.15844, Algorithm 1): A_j = A_intra(sub-group of j) + A_inter(j), with
    A_intra = mean_{sub-group} R - beta·cos(pi·b/(2·L_max)) (sub-group: same prompt, same budget b) and
    A_inter = (R_j - mean_g R) / (std_g R + eps), population std over the group (0 in an all-equal group).
    budget: [P, G]."""
    same = (budget[:, :, None] == budget[:, None, :]).to(R.dtype)  # [P, G, G] same-budget indicator
    sub_mean = (same * R[:, None, :]).sum(-1) / same.sum(-1)  # [P, G]
    intra = sub_mean - beta * torch.cos(math.pi * budget.to(R.dtype) / (2 * max_len))
    std = R.std(-1, unbiased=False, keepdim=True)
    inter = torch.where(std > 0, (R - R.mean(-1, keepdim=True)) / (std + eps), torch.zeros_like(R))  # 0, not 0/0
    return intra + inter


for spec in [
    AdvantageSpec("grpo", _grpo, {"eps": 1e-6}, "(R_i - mean_g R) / (std_g R + eps)",
                  "DeepSeekMath, arXiv 2402.03300 (JustGRPO uses eps = 1e-4)"),
    AdvantageSpec("dr_grpo", _dr_grpo, {}, "R_i - mean_g R", "Dr. GRPO, arXiv 2503.20783"),
    AdvantageSpec("batch", _batch, {"eps": 1e-6}, "(R_i - mean_g R) / (std_batch(R - mean_g R) + eps)",
                  "DLER arXiv 2510.15110; REINFORCE++-baseline arXiv 2501.03262"),
    AdvantageSpec("rloo", _rloo, {}, "R_i - mean_{j != i} R_j", "RLOO, arXiv 2402.14740"),
    AdvantageSpec("hbpo", _hbpo, {"eps": 1e-6, "max_len": 4096.0, "beta": 4.0},
                  "mean_{same budget} R - beta·cos(pi·b_i/(2·L_max)) + (R_i - mean_g R) / (std_g R + eps); "
                  "needs budget=[N] (the budget each response was sampled with)",
                  "HBPO, arXiv 2507.15844 (Algorithm 1)", per_response=("budget",)),
]:
    ADVANTAGES.register(spec.name, spec)


def compute_advantages(name: str, rewards: torch.Tensor, group_size: int, **hparams) -> torch.Tensor:
    """Advantages [N] of the estimator `name` for contiguous groups of `group_size` rewards [N]."""
    spec = ADVANTAGES[name]
    check_hparams("advantage estimator", name, hparams, set(spec.hparams) | set(spec.per_response))
    if not isinstance(rewards, torch.Tensor):
        rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.dim() != 1:
        raise ConfigError(f"compute_advantages({name!r}): rewards must be [N], got shape {tuple(rewards.shape)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ConfigError(f"compute_advantages({name!r}): group_size must be a positive int, got {group_size!r}")
    if rewards.numel() % group_size:
        raise ConfigError(
            f"compute_advantages({name!r}): {rewards.numel()} rewards do not split into groups of "
            f"group_size={group_size}; N must be prompts × group_size"
        )
    bad = (~torch.isfinite(rewards)).nonzero().flatten()
    if bad.numel():
        raise ConfigError(
            f"compute_advantages({name!r}): reward(s) at index {bad[:5].tolist()} are NaN or inf; "
            "fix the reward function (a failing verifier should give 0)"
        )
    R = rewards.detach().to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)
    hp = spec.hparams | {k: v for k, v in hparams.items() if k not in spec.per_response}
    per = {}
    for k in spec.per_response:
        v = hparams.get(k)
        if v is None:
            raise ConfigError(f"compute_advantages({name!r}) needs {k}=[N] (one value per response)")
        v = torch.as_tensor(v, dtype=R.dtype)
        if v.shape != rewards.shape or not bool(torch.isfinite(v).all()) or not bool((v > 0).all()):
            raise ConfigError(f"compute_advantages({name!r}): {k} must be [N] = {tuple(rewards.shape)} of positive "
                              f"finite values, got shape {tuple(v.shape)}")
        per[k] = v.view(-1, group_size)
    for k, v in hp.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"compute_advantages({name!r}): {k} must be a finite number >= 0, got {v!r}")
    return spec.fn(R.view(-1, group_size), **per, **hp).reshape(-1).to(rewards.dtype if rewards.is_floating_point()
                                                                  else torch.float32)
