"""HAPO (History-Aware Policy Optimization, Huang et al., arXiv 2505.11225): a per-prompt history h of the
shortest correct length seen so far in training; the length reward is relative to h."""

from __future__ import annotations

import math

import torch

from lengthrl.rewards._checks import number, per_sample
from lengthrl.rewards.registry import REQUIRED, register_length_reward


@register_length_reward(
    "hapo",
    formula="c + w*r, r = cos(pi/2 * L/h) if L < 2h else -1; correct: max(-0.7, r), wrong: min(0, r); r = 0 if no history",
    paper="HAPO 2505.11225",
    includes_correctness=True,
)
def hapo(lengths, correct, group_size, *, history=REQUIRED, w=1.0, correct_floor=-0.7):
    """HAPO reward (Huang et al., arXiv 2505.11225), stateless form: `history` gives each response its prompt's h (<= 0 means no correct
    answer seen yet: length reward 0). Use `HAPO` to keep h across steps.

        r = cos(pi/2 * L/h)   if L < 2h
          = -1                otherwise
        r_len = max(correct_floor, r) if correct else min(0, r)
        R = c + w * r_len

    Paper defaults: w = 1, correct_floor = -0.7 (so every correct answer, r >= 0.3, beats every wrong one,
    r <= 0). A correct answer shorter than h earns up to +1, one at h earns 0, longer ones lose; wrong
    answers are never rewarded for being short (min(0, r)), only penalised for being longer than h.
    Non-increasing in length for both correct and wrong answers.
    """
    h = per_sample(history, lengths.numel(), "history")  # [N]
    w = number(w, "w", lo=0)
    floor = number(correct_floor, "correct_floor", lo=-1, hi=0)
    has = h > 0
    hh = torch.where(has, h, torch.ones_like(h))
    r = torch.where(lengths < 2 * hh, torch.cos(math.pi / 2 * lengths / hh), torch.full_like(lengths, -1.0))
    r = torch.where(correct > 0, r.clamp_min(floor), r.clamp_max(0.0))
    return correct + w * torch.where(has, r, torch.zeros_like(r))
