"""Rewards shaped as a fixed curve of the length: the cosine reward of Yeo et al. and the label-free
format + length surrogate."""

from __future__ import annotations

import math

import torch

from lengthrl.rewards._checks import number
from lengthrl.rewards.registry import REQUIRED, register_length_reward


def cosfn(t: torch.Tensor, T: float, r0: float, rT: float) -> torch.Tensor:
    """Cosine interpolation from r0 at t = 0 to rT at t = T: rT + (r0 - rT)/2 * (1 + cos(pi t / T))."""
    return rT + 0.5 * (r0 - rT) * (1 + torch.cos(math.pi * t / T))


@register_length_reward(
    "cosine",
    formula="L < Lmax: CosFn(L) from r0 to rL (r0c=2, rLc=1 if correct; r0w=-10, rLw=0 if wrong); L >= Lmax: r_exceed",
    paper="Yeo et al. 2502.03373",
    includes_correctness=True,
)
def cosine(lengths, correct, group_size, *, max_len=REQUIRED, r0_correct=2.0, rL_correct=1.0,
           r0_wrong=-10.0, rL_wrong=0.0, r_exceed=-10.0):
    """Cosine length-scaling reward (Yeo et al., "Demystifying Long Chain-of-Thought Reasoning in LLMs",
    arXiv 2502.03373, sec. 4.2):

        CosFn(t, T, a, b) = b + (a - b)/2 * (1 + cos(pi t / T))     (a at t = 0, b at t = T)
        R(c, L) = CosFn(L, L_max, r0_correct, rL_correct)  if correct and L < L_max
                = CosFn(L, L_max, r0_wrong,   rL_wrong)    if wrong   and L < L_max
                = r_exceed                                  if L >= L_max (hit the cap)

    Paper values: r0_correct = 2, rL_correct = 1, r0_wrong = -10, rL_wrong = 0, r_exceed = -10.
    Correct answers prefer short, wrong answers prefer long (think more when unsure); responses that run
    into the cap are punished. The paper writes CosFn with (eta_min, eta_max) arguments; r_0 is the value
    at length 0 and r_L the value at L_max, as in the released code (which swaps the arguments for wrong
    answers to get this). The released code applies r_exceed when L + 16 >= L_max (a safety margin for
    tokenisation); here it applies when L >= L_max: pass a smaller max_len to reproduce the margin.
    """
    T = number(max_len, "max_len", lo=0, lo_open=True)
    vals = [number(v, k) for k, v in (("r0_correct", r0_correct), ("rL_correct", rL_correct),
                                       ("r0_wrong", r0_wrong), ("rL_wrong", rL_wrong), ("r_exceed", r_exceed))]
    r0c, rLc, r0w, rLw, re = vals
    L = lengths.clamp_max(T)
    r = torch.where(correct > 0, cosfn(L, T, r0c, rLc), cosfn(L, T, r0w, rLw))
    return torch.where(lengths >= T, torch.full_like(r, re), r)


@register_length_reward(
    "surrogate",
    formula="f ? format_weight + g(L/Lmax) : min(0, g); g = 1-(1-x/p)^2 (x <= p), 1-2((x-p)/(1-p))^2 (p < x <= 1), -1 beyond",
    paper="Surrogate format+length 2505.19439",
    includes_correctness=True,
)
def surrogate(lengths, correct, group_size, *, max_len=REQUIRED, peak=0.5, format_weight=1.0):
    """Format + length surrogate reward for training without ground truth (Xin et al., arXiv 2505.19439).

    Pass the *format* check (the response follows the answer template) as `correct`; f in {0,1}:

        x = L / L_max,  g(x) = 1 - (1 - x/p)^2            for 0 <= x <= p   (rises fast, flat at the peak)
                        = 1 - 2 ((x - p)/(1 - p))^2      for p < x <= 1    (falls ever faster, -1 at L_max)
                        = -1                             for x > 1
        r = format_weight + g(x)   if f
          = min(0, g(x))           otherwise

    Paper / released code: p = 0.5, L_max = the response cap (3072), format_weight = 1 (two format checks
    worth 0.5 each, passed as one flag here). Peaks at p * L_max: pushes short responses longer and long
    ones shorter. Beyond the cap the released formula keeps falling; we hold it at its cap value -1.
    """
    T = number(max_len, "max_len", lo=0, lo_open=True)
    p = number(peak, "peak", lo=0, hi=1, lo_open=True, hi_open=True)
    w = number(format_weight, "format_weight")
    x = lengths / T
    g = torch.where(x <= p, 1 - (1 - x / p) ** 2, 1 - 2 * ((x.clamp_max(1.0) - p) / (1 - p)) ** 2)
    return torch.where(correct > 0, w + g, g.clamp_max(0.0))
