"""DAPO dynamic sampling as a reusable filter."""

from __future__ import annotations

import torch

from lengthrl.rewards._checks import as_values, check_group_size, groups, number


def dynamic_sampling_filter(rewards, group_size: int, atol: float = 0.0) -> tuple[torch.Tensor, float]:
    """DAPO dynamic sampling (arXiv 2503.14476, sec. 3.2): drop groups whose rewards are all equal.

    Such groups have zero group-relative advantage and give no gradient. Returns (keep_mask [N] bool,
    kept_fraction), kept_fraction = kept groups / groups. A group is "all equal" when
    max - min <= atol (0 by default: exact equality). DAPO then samples more prompts until the batch is full;
    the caller does that loop.
    """
    r = as_values(rewards, None, "rewards")  # [N]
    g = check_group_size(r.numel(), group_size)
    atol = number(atol, "atol", lo=0)
    rg = groups(r, g)  # [P, G]
    keep_group = (rg.max(dim=1).values - rg.min(dim=1).values) > atol  # [P]
    keep = keep_group.repeat_interleave(g)  # [N]
    return keep, float(keep_group.to(torch.float64).mean().item())
