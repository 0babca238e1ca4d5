"""Prompt order for training: a deterministic, resumable walk over the task's training prompts."""

from __future__ import annotations

import torch

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample


class PromptSampler:
    """Epochs over a fixed pool, each in a fresh permutation seeded by (seed, epoch). State = (epoch, pos)."""

    def __init__(self, pool: list[Sample], seed: int):
        if not pool:
            raise ConfigError("the task gave no training prompts; check 'task' and 'task_args'")
        self.pool, self.seed, self.epoch, self.pos = pool, seed, 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.pool), generator=g).tolist()

    def next(self, k: int) -> list[Sample]:
        out = []
        while len(out) < k:
            if self.pos >= len(self._perm):
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            out.append(self.pool[self._perm[self.pos]])
            self.pos += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        self.epoch, self.pos = int(s["epoch"]), int(s["pos"])
        self._perm = self._permutation(self.epoch)
