"""Any reasoning-gym dataset as a task: `get_task("reasoning_gym:<dataset>", size=..., **dataset_config)`.

Samples are generated procedurally by `reasoning_gym.create_dataset(name, size=, seed=, **config)`; the
train split uses `seed`, the test split `seed + TEST_SEED_OFFSET`, so the two are distinct draws. A response
is scored with the dataset's own `score_answer(answer, entry)` (a float in [0, 1]; some datasets give partial
credit) on the answer read from the response by `response_rule` (default: the `<answer>` tag, the
reasoning-gym convention, falling back to the rest of the `auto` rule).
"""

from __future__ import annotations

from typing import Any

from lengthrl.errors import ConfigError, UnknownNameError
from lengthrl.tasks.base import Sample, Score, Task
from lengthrl.tasks.registry import TASKS
from lengthrl.tasks.templates import TEMPLATES, apply_template, choose_budget
from lengthrl.verifiers.extract import EXTRACTORS, check_format, extract_answer

TEST_SEED_OFFSET = 1_000_003


def dataset_names() -> list[str]:
    """Names of every reasoning-gym dataset."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


@TASKS.register("reasoning_gym")
class ReasoningGymTask(Task):
    """A reasoning-gym dataset, built procedurally and scored with the dataset's own `score_answer`."""

    name_arg = "dataset"

    def __init__(
        self,
        dataset: str,
        size: int = 1000,
        template: str = "think_answer",
        response_rule: str = "auto",
        format_template: str | None = None,
        budgets: int | list[int] | None = None,
        budget_range: tuple[int, int] | None = None,
        **config: Any,
    ):
        import reasoning_gym

        names = dataset_names()
        if dataset not in names:
            raise UnknownNameError(f"unknown reasoning-gym dataset {dataset!r}; valid names: {', '.join(names)}")
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(f"size must be a positive integer, got {size!r}")
        EXTRACTORS[response_rule]
        self.tpl = TEMPLATES[template]
        self.dataset, self.size, self.config = dataset, size, config
        self.response_rule, self.format_template = response_rule, format_template
        self.budgets, self.budget_range = budgets, budget_range
        self.name = f"reasoning_gym:{dataset}"
        self._make = reasoning_gym.create_dataset
        self._scorer = self._build(size=1, seed=0)  # score_answer depends on the entry, not on the draw

    def _build(self, size: int, seed: int):
        try:
            return self._make(self.dataset, size=size, seed=seed, **self.config)
        except (TypeError, AssertionError, ValueError) as e:
            raise ConfigError(f"reasoning-gym dataset {self.dataset!r}: bad configuration {self.config!r} ({e})") from None

    def samples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Sample]:
        """`n` (default `size`) procedurally generated samples; deterministic in (split, seed)."""
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r}; valid: train, test")
        count = self.size if n is None else n
        if not isinstance(count, int) or count < 0:
            raise ConfigError(f"n must be a non-negative integer or None, got {n!r}")
        if count == 0:
            return []
        draw_seed = seed + (TEST_SEED_OFFSET if split == "test" else 0)
        ds = self._build(size=count, seed=draw_seed)
        out = []
        for i in range(count):
            entry = ds[i]
            sid = f"rg:{self.dataset}:{split}:{seed}:{i}"
            s = Sample(id=sid, prompt=entry["question"], answer=str(entry["answer"]), meta={"entry": entry})
            budget = choose_budget(sid, seed, self.budgets, self.budget_range)
            out.append(apply_template(s, self.tpl, budget))
        return out

    def score(self, sample: Sample, response: str) -> Score:
        """The dataset's `score_answer` on the extracted answer; correct when it is 1."""
        entry = sample.meta.get("entry")
        if entry is None:
            raise ConfigError(f"sample {sample.id!r} does not come from reasoning-gym (no meta['entry'])")
        pred = extract_answer(response, self.response_rule)
        try:
            reward = float(self._scorer.score_answer(pred, entry)) if pred is not None else 0.0
        except Exception:  # a scorer that chokes on a hostile answer gives 0, not a crash
            reward = 0.0
        fmt = check_format(response, self.format_template) if self.format_template else pred is not None
        return Score(correct=reward >= 1.0, reward=reward, format_ok=fmt, extracted=pred)
