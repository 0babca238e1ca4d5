"""`StepBatch`: one RL step's prompts and this rank's share of them, the only place that maps between the global
batch and this rank's rows.

The global batch is P = prompts_per_step prompts × G responses = N rows, groups contiguous, the same prompts on
every rank (each rank draws them from the same sampler state). With W processes, rank r holds the contiguous
prompt block [lo, hi) = [r·P/W, (r+1)·P/W) and so the rows [lo·G, hi·G): it samples, verifies and updates on
those n = (hi - lo)·G rows, while rewards, advantages and dynamic sampling need all N (one process: lo = 0,
hi = P, n = N).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from lengthrl.tasks.base import Sample
from lengthrl.train.distributed import SINGLE, Dist


class Gathered(NamedTuple):
    """The whole batch's responses as every rank sees them after `StepBatch.gather`, in row order."""

    texts: list[str]  # [N]
    lengths: torch.Tensor  # [N] response tokens, EOS included
    truncated: torch.Tensor  # [N] bool: hit max_new_tokens without EOS
    verdicts: list  # [N] the verifier's Score of each response
    failures: list[dict]  # verifier failures, "index" into the N rows
    extra: dict[str, list[float]] = {}  # the user's Python reward functions: key -> [N] values


@dataclass(frozen=True)
class StepBatch:
    """The step's prompts (global) and this rank's block [lo, hi) of them."""

    samples: list[Sample]  # [P] the global batch's prompts, the same on every rank
    group_size: int  # G
    lo: int  # this rank's first prompt
    hi: int  # one past this rank's last prompt
    dist: Dist = field(default_factory=lambda: SINGLE)

    @property
    def n_rows(self) -> int:
        """N = P·G, the rows of the whole batch."""
        return len(self.samples) * self.group_size

    @property
    def local_samples(self) -> list[Sample]:
        """This rank's prompts [hi - lo]."""
        return self.samples[self.lo:self.hi]

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a per-response tensor of the whole batch: [N, ...] -> [n, ...]."""
        G = self.group_size
        return x[self.lo * G:self.hi * G]

    def global_groups(self, local_group_index: torch.Tensor) -> torch.Tensor:
        """Group ids [n] of this rank's rows (0-based on this rank) -> their ids in the whole batch [n]."""
        return local_group_index + self.lo

    def kept_groups(self, keep: torch.Tensor) -> torch.Tensor:
        """The global ids of the groups with a kept row, keep: [N] bool -> [<= P] long (sorted)."""
        group_of_row = torch.arange(len(self.samples)).repeat_interleave(self.group_size)  # [N]
        return torch.unique(group_of_row[keep])

    def gather(self, texts: list[str], lengths: torch.Tensor, truncated: torch.Tensor, verdicts: list,
               failures: list[dict], extra: dict[str, list[float]] | None = None) -> Gathered:
        """This rank's texts [n], lengths [n], truncation flags [n], verdicts [n], failures (indices into its
        n rows) and Python reward values ({key: [n]}) -> the whole batch's [N], in rank order, on every rank
        (failure indices into the N rows)."""
        offset = self.lo * self.group_size
        failures = [{**f, "index": f["index"] + offset} for f in failures]
        extra = extra or {}
        if not self.dist.enabled:
            return Gathered(texts, lengths, truncated, verdicts, failures, extra)
        parts = self.dist.gather_objects((texts, lengths, truncated, verdicts, failures, extra))
        return Gathered([t for p in parts for t in p[0]], torch.cat([p[1] for p in parts]),
                        torch.cat([p[2] for p in parts]), [v for p in parts for v in p[3]],
                        [f for p in parts for f in p[4]], {k: [v for p in parts for v in p[5][k]] for k in extra})
