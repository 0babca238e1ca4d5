"""A small self-contained arithmetic task for the diffusion organism: "a+b=" -> "c".

It implements `lengthrl.tasks.base.Task`, so the built-in procedural tasks replace it wherever a task is passed, and
is registered in the task registry as ``dllm_addition`` (``get_task("dllm_addition", max_operand=19)``) once
`lengthrl.dllm` is imported (the diffusion policy of the trainer imports it).
"""

from __future__ import annotations

import random

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample, Score, Task
from lengthrl.tasks.registry import TASKS


@TASKS.register("dllm_addition")
class AdditionTask(Task):
    """Sums of two integers in [0, max_operand]; train and test are disjoint halves of all pairs (by seed 0)."""

    name = "dllm_addition"

    def __init__(self, max_operand: int = 9, test_fraction: float = 0.25):
        if max_operand < 1:
            raise ConfigError(f"max_operand must be >= 1, got {max_operand}")
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
        pairs = [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]
        random.Random(0).shuffle(pairs)
        k = max(1, int(len(pairs) * test_fraction))
        self._split = {"test": pairs[:k], "train": pairs[k:]}

    def samples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Sample]:
        if split not in self._split:
            raise ConfigError(f"split must be one of {', '.join(self._split)}, got {split!r}")
        pairs = list(self._split[split])
        random.Random(seed).shuffle(pairs)
        pairs = pairs if n is None else [pairs[i % len(pairs)] for i in range(n)]
        return [Sample(id=f"{a}+{b}", prompt=f"{a}+{b}=", answer=str(a + b), solution=str(a + b)) for a, b in pairs]

    def score(self, sample: Sample, response: str) -> Score:
        got = response.strip()
        ok = got == sample.answer
        return Score(correct=ok, reward=float(ok), format_ok=got.isdigit(), extracted=got)
