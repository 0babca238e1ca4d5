"""Rewards that act only near or beyond the length cap: DAPO's soft overlong punishment, DAPO's overlong
filtering (a loss mask), and DLER's truncation reward."""

from __future__ import annotations

import torch

from lengthrl.errors import ConfigError
from lengthrl.rewards._checks import as_lengths, as_values, number
from lengthrl.rewards.registry import REQUIRED, register_length_reward


@register_length_reward(
    "dapo_overlong",
    formula="0 if L <= Lmax-Lc; ((Lmax-Lc) - L)/Lc if Lmax-Lc < L <= Lmax; -1 if L > Lmax",
    paper="DAPO 2503.14476",
    includes_correctness=False,
)
def dapo_overlong(lengths, correct, group_size, *, max_len=REQUIRED, cache_len=REQUIRED):
    """DAPO soft overlong punishment (Yu et al., DAPO, arXiv 2503.14476, eq. 13), the penalty term alone:

        R_len(L) = 0                              if L <= L_max - L_cache
                 = ((L_max - L_cache) - L)/L_cache  if L_max - L_cache < L <= L_max
                 = -1                             if L > L_max

    It is added to the task reward (DAPO: +-1 correctness; LUSPO scales it by 0.3). Paper defaults:
    L_max = 20480 (16384 expected + 4096 cache), L_cache = 4096. Independent of correctness.
    Non-increasing in length; zero for lengths well inside the cap.
    """
    max_len = number(max_len, "max_len", lo=0, lo_open=True)
    cache_len = number(cache_len, "cache_len", lo=0, hi=max_len, lo_open=True)
    L = lengths  # [N]
    soft = max_len - cache_len
    r = torch.where(L <= soft, torch.zeros_like(L), (soft - L) / cache_len)
    return torch.where(L > max_len, torch.full_like(L, -1.0), r)


@register_length_reward(
    "dler",
    formula="c if L <= Lmax else 0",
    paper="DLER 2510.15110",
    includes_correctness=True,
)
def dler(lengths, correct, group_size, *, max_len=REQUIRED, truncated=None):
    """DLER truncation reward (Liu et al., DLER, arXiv 2510.15110): the only length penalty is the cap.

        R(L, c) = c  if L <= L_max (and not truncated) else 0

    When generation itself stops at the cap, a cut-off response has L == cap: pass the sampler's
    `truncated` [N] flags (True = stopped at the cap without an end token) to zero those too.
    DLER pairs it with group-mean centring + batch whitening of advantages, e_hi = 0.28 and dynamic
    sampling; with a tight cap (about 4k tokens for DeepSeek-R1-7B) it reports ~70% shorter responses at
    the same accuracy. Non-increasing in length.
    """
    max_len = number(max_len, "max_len", lo=0, lo_open=True)
    keep = lengths <= max_len
    if truncated is not None:
        keep = keep & (_truncated(truncated, lengths.numel()) == 0)
    return torch.where(keep, correct, torch.zeros_like(correct))


def _truncated(truncated, n: int) -> torch.Tensor:
    t = as_values(torch.as_tensor(truncated).to(torch.float64), n, "truncated")
    if ((t != 0) & (t != 1)).any():
        raise ConfigError("truncated must be a [N] bool tensor (True = cut at the cap)")
    return t


def overlong_filter_mask(lengths, max_len: int, truncated=None) -> torch.Tensor:
    """DAPO overlong filtering (arXiv 2503.14476, sec. 3.4): a [N] float loss mask, 0 for truncated responses.

    A response is truncated when it stopped at the cap without an end-of-sequence token. Pass `truncated`
    ([N] bool, e.g. from the sampler) when known; otherwise a response is taken as truncated when its
    length is >= max_len. Multiply the per-sequence loss weights (or the token mask) by this mask.
    """
    L = as_lengths(lengths)  # [N]
    max_len = number(max_len, "max_len", lo=0, lo_open=True)
    if truncated is None:
        cut = L >= max_len
    else:
        cut = _truncated(truncated, L.numel()).bool()
    return (~cut).to(torch.float32)
