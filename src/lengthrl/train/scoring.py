"""Scoring: responses -> verifier verdicts -> reward terms -> total reward. A verifier that raises is isolated:
the response gets reward 0, the error is counted and the run goes on."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from lengthrl.rewards import CompositeReward
from lengthrl.tasks.base import Sample, Score, Task

log = logging.getLogger("lengthrl.train")


@dataclass
class Scored:
    rewards: torch.Tensor  # [B] total reward
    terms: dict[str, torch.Tensor]  # term -> [B] raw values
    correct: torch.Tensor  # [B] bool
    format_ok: torch.Tensor  # [B] bool
    verifier_errors: int


def score_batch(task: Task, reward: CompositeReward, samples: list[Sample], texts: list[str],
                lengths: torch.Tensor, group_size: int, truncated: torch.Tensor | None = None) -> Scored:
    """samples: one per prompt; texts/lengths/truncated: [prompts × group_size] responses, groups contiguous.
    `truncated` (hit the token budget without EOS) goes to the terms that take it (DLER: a cut-off response
    has length exactly max_len and must still get 0)."""
    scores: list[Score] = []
    errors = 0
    for i, text in enumerate(texts):
        sample = samples[i // group_size]
        try:
            scores.append(task.score(sample, text))
        except Exception as e:  # noqa: BLE001 - a broken verifier must not end the run
            errors += 1
            log.warning("verifier of task %s raised on prompt %s: %r; reward 0", task.name, sample.id, e)
            scores.append(Score(correct=False, reward=0.0, format_ok=False))
    correct = torch.tensor([s.correct for s in scores], dtype=torch.bool)
    fmt = torch.tensor([s.format_ok for s in scores], dtype=torch.bool)
    task_reward = torch.tensor([s.reward for s in scores], dtype=torch.float32)
    kw = {}
    if any(s.target_len is not None for s in samples):
        kw["target"] = torch.tensor([float(samples[i // group_size].target_len or 0) for i in range(len(texts))])
    if truncated is not None:
        kw["truncated"] = truncated
    ids = [samples[i // group_size].id for i in range(len(texts))]
    needs = {k for t in reward.terms for k in _per_sample_keys(t.name)}
    kw = {k: v for k, v in kw.items() if k in needs}
    total, terms = reward(lengths, correct, group_size, format_ok=fmt, task_reward=task_reward,
                          prompt_ids=ids, **kw)
    return Scored(total, terms, correct, fmt, errors)


def _per_sample_keys(name: str) -> set[str]:
    from lengthrl.rewards import LENGTH_REWARDS

    return set(LENGTH_REWARDS[name].hparams) if name in LENGTH_REWARDS else set()
