"""DAPO dynamic sampling (arXiv 2503.14476, sec. 3.2 and Algorithm 1), as the config key `dynamic_sampling`:

    off       every group of the step's P = prompts_per_step prompts enters the update
    drop      groups whose G rewards are all equal (no group-relative signal) are dropped; the update trains on
              the rest (fewer than P groups)
    resample  DAPO's loop: sample P more prompts while the batch holds fewer than P groups with signal, at
              most `max_resample_rounds` sampling rounds per step (the first included); the first P groups with
              signal (rounds in order, prompts in order) enter the update, later ones are discarded; when the
              rounds run out the update trains on the groups it has

A round is one call of the step's rollout -> verify -> reward -> advantage stages on P fresh prompts; each
round's rewards and advantages are computed on that round's batch (group-relative estimators are the same as
on the assembled batch; a batch-whitened one whitens per round). This module only decides which groups of
which rounds are kept (`keep_masks`) and stacks per-round tensors; the trainer runs the rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lengthrl.rewards import dynamic_sampling_filter


@dataclass(frozen=True)
class RoundSignal:
    """Which groups of one round carry a learning signal."""

    signal: torch.Tensor  # [P] bool: the group's rewards are not all equal
    finite: bool  # every reward and advantage of the round is finite


def round_signal(rewards: torch.Tensor, group_size: int, finite: bool) -> RoundSignal:
    """The groups with reward spread of a round's rewards [N] (DAPO's filter: 0 < accuracy < 1 for a 0/1 reward).
    A round with a non-finite reward is not filtered (every group marked): the trainer's non-finite guard then
    skips the step and names the term, which the filter's own check of its input would hide."""
    if not finite:
        return RoundSignal(torch.ones(rewards.numel() // group_size, dtype=torch.bool), finite)
    keep, _ = dynamic_sampling_filter(rewards, group_size)  # [N]
    return RoundSignal(keep.view(-1, group_size)[:, 0].clone(), finite)


def more_rounds(mode: str, signals: list[RoundSignal], prompts_per_step: int, max_rounds: int) -> bool:
    """True when the step samples another round: mode 'resample', every round so far finite, fewer than P
    groups with signal, and fewer than `max_rounds` rounds."""
    if mode != "resample" or not signals[-1].finite or len(signals) >= max_rounds:
        return False
    return sum(int(s.signal.sum()) for s in signals) < prompts_per_step


def keep_masks(mode: str, signals: list[RoundSignal], prompts_per_step: int, group_size: int) -> list[torch.Tensor]:
    """Per round, [N] bool: the rows that enter the update. 'off': every row of the (single) round; 'drop':
    the groups with signal; 'resample': the first P groups with signal over the rounds in order."""
    out = []
    budget = prompts_per_step
    for s in signals:
        if mode == "off" or not s.finite:
            g = torch.ones_like(s.signal)
        elif mode == "drop":
            g = s.signal.clone()
        else:
            g = s.signal & (torch.cumsum(s.signal.long(), 0) <= budget)  # [P]
            budget -= int(g.sum())
        out.append(g.repeat_interleave(group_size))
    return out


def cat_terms(terms: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Reward terms of several rounds, each term's [N] values stacked in round order."""
    return {k: torch.cat([t[k] for t in terms]) for k in terms[0]}
