"""The Task interface: a dataset of prompts with reference answers and a verifier.

A task yields `Sample`s and scores a response text against one. Everything downstream (rewards, trainer,
evaluation) sees only this interface, so the built-in procedural tasks, reasoning-gym datasets and a user's
JSONL/CSV/parquet file are interchangeable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One prompt of a task."""

    id: str  # stable prompt id (used by per-prompt reward state such as HAPO's history)
    prompt: str  # the text given to the model (already templated, without the response)
    answer: str  # reference answer, as text
    solution: str | None = None  # a worked solution trace (for supervised warm-up), if the task has one
    target_len: int | None = None  # length target / budget in tokens (L1, HBPO, Ruler), if any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Score:
    """A verifier's verdict on one response."""

    correct: bool  # the answer matches the reference
    reward: float  # task reward (1.0 / 0.0 for exact-answer tasks; a fraction for partial credit)
    format_ok: bool = True  # the response follows the expected template (e.g. has an answer tag)
    extracted: str | None = None  # the answer the verifier read from the response


class Task(ABC):
    """A dataset of prompts with a verifier. Subclasses set `name` and implement `samples` and `score`."""

    name: str = "task"

    @abstractmethod
    def samples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Sample]:
        """Up to `n` samples of `split` ("train" or "test"), deterministic in `seed`."""

    @abstractmethod
    def score(self, sample: Sample, response: str) -> Score:
        """Verify `response` (the generated text, without the prompt) against `sample`."""
