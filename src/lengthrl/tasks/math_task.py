"""Tasks held in memory (`ListTask`) and the math task that scores with the math verifier."""

from __future__ import annotations

import random
from collections.abc import Sequence

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample, Score, Task
from lengthrl.verifiers.extract import EXTRACTORS, FORMATS, check_format, extract_answer
from lengthrl.verifiers.math_verifier import MathVerifier


class ListTask(Task):
    """A task over given lists of train / test samples; `samples` shuffles deterministically in `seed`."""

    name = "list"

    def __init__(self, train: Sequence[Sample], test: Sequence[Sample] | None = None):
        self.splits = {"train": list(train), "test": list(test or [])}

    def samples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Sample]:
        """Up to `n` samples of `split`, in an order shuffled by `seed`."""
        if split not in self.splits:
            raise ConfigError(f"unknown split {split!r}; valid: {', '.join(self.splits)}")
        if n is not None and (not isinstance(n, int) or n < 0):
            raise ConfigError(f"n must be a non-negative integer or None, got {n!r}")
        items = list(self.splits[split])
        random.Random(seed).shuffle(items)
        return items if n is None else items[:n]


class MathTask(ListTask):
    """Math problems with reference answers, scored by `MathVerifier` (numeric tolerance, then math-verify).

    `response_rule`: how the answer is read from a response (`auto`, `boxed`, `answer_tag`, `hash`,
    `last_number`); `format_template`: when set (`think_answer`, `answer_tag`, `hash`, `boxed`),
    `Score.format_ok` says whether the whole response follows it; otherwise whether the response marks an
    answer (`<answer>` tags, `\\boxed{}` or `#### n`; with `response_rule` `auto` a bare number anywhere is
    no format, or a `format` reward would pay any digit), or, for an explicit rule, whether it found one.
    """

    name = "math"

    def __init__(
        self,
        train: Sequence[Sample],
        test: Sequence[Sample] | None = None,
        response_rule: str = "auto",
        format_template: str | None = None,
        verifier: MathVerifier | None = None,
    ):
        super().__init__(train, test)
        EXTRACTORS[response_rule]  # unknown names fail here, listing the valid ones
        if format_template is not None:
            FORMATS[format_template]
        self.response_rule = response_rule
        self.format_template = format_template
        self.verifier = verifier or MathVerifier()

    def score(self, sample: Sample, response: str) -> Score:
        """1.0 when the answer extracted from `response` equals `sample.answer`, else 0.0."""
        pred = extract_answer(response, self.response_rule)
        ok = self.verifier.equivalent(pred, sample.answer)
        if self.format_template:
            fmt = check_format(response, self.format_template)
        elif self.response_rule == "auto":
            fmt = any(extract_answer(response, r) is not None for r in ("answer_tag", "boxed", "hash"))
        else:
            fmt = pred is not None
        return Score(correct=ok, reward=float(ok), format_ok=fmt, extracted=pred)
