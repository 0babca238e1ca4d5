"""`DataTask`: the user's local file as a task (math answers or code tests), with prompt templates and budgets."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lengthrl.errors import ConfigError
from lengthrl.registry import Registry
from lengthrl.tasks.base import Sample, Score, Task
from lengthrl.tasks.code_task import CodeTask
from lengthrl.tasks.data import FieldMap, load_samples
from lengthrl.tasks.math_task import ListTask, MathTask
from lengthrl.tasks.registry import TASKS
from lengthrl.tasks.templates import TEMPLATES, apply_template, choose_budget

log = logging.getLogger("lengthrl.tasks")

DEFAULT_TEST_FRACTION = 0.1  # held out when neither test_path nor test_fraction is given

# The answer format a prompt template asks for -> (response rule, format check). A template that asks for
# no format leaves it to the answer rule of the reference column (GSM8K '#### n' -> `hash`, MATH -> `boxed`).
TEMPLATE_FORMATS = {"gsm8k": ("hash", "hash"), "boxed": ("boxed", "boxed"),
                    "think_answer": ("answer_tag", "think_answer")}
ANSWER_RULE_FORMATS = {"hash": ("hash", "hash"), "boxed": ("boxed", "boxed")}


def task_format(template: str, answer_rule: str) -> tuple[str, str | None]:
    """(response_rule, format_template) that follow the task's format: the prompt template's when it asks for
    one, else the reference answers' (`answer_rule` hash / boxed), else ('auto', None)."""
    return TEMPLATE_FORMATS.get(template) or ANSWER_RULE_FORMATS.get(answer_rule) or ("auto", None)


TASK_KINDS: Registry[type[ListTask]] = Registry("data task kind")
TASK_KINDS.register("math", MathTask)
TASK_KINDS.register("code", CodeTask)


def _in_test(sample_id: str, fraction: float) -> bool:
    """Deterministic hold-out: a sample is in the test split when the hash of its id falls below `fraction`."""
    h = int.from_bytes(hashlib.sha256(sample_id.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return h / 2**64 < fraction


def _check_scoring(kind: str, cls: type, scoring: Any) -> dict[str, Any]:
    """`task_args.scoring` checked against the task class's keyword arguments, with values of the right kind."""
    import inspect

    if scoring is None:
        return {}
    if not isinstance(scoring, dict):
        raise ConfigError(f"task_args.scoring must be a table of keyword arguments, got {scoring!r}")
    valid = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "train", "test")]
    unknown = [k for k in scoring if k not in valid]
    if unknown:
        raise ConfigError(f"task_args.scoring: unknown key(s) {', '.join(map(str, unknown))} for a {kind} data "
                          f"task; valid: {', '.join(valid)}")
    out = dict(scoring)
    if "limits" in out:
        from lengthrl.verifiers.sandbox import limits_from

        out["limits"] = limits_from(out["limits"], "task_args.scoring.limits")
    for key in ("response_rule", "format_template", "mode"):
        if key in out and out[key] is not None and not isinstance(out[key], str):
            raise ConfigError(f"task_args.scoring.{key} must be a name (a string), got {out[key]!r}")
    return out


@TASKS.register("data")
class DataTask(Task):
    """A task read from a local JSONL / JSON / CSV / parquet file (see `lengthrl.tasks.data`).

    Args:
        path: the training file. `test_path`: an optional test file (same mapping); otherwise
            `test_fraction` of the rows (chosen by a hash of their id) are held out as the test split
            (default 0.1 when neither is given; `test_fraction=0` trains on every row and has no test split).
        prompt_field, answer_field, id_field, target_len_field, solution_field, tests_field, answer_rule:
            the `FieldMap`.
        kind: `math` (scored by the math verifier) or `code` (the response's program run against the
            row's tests in the sandbox); `scoring`: keyword arguments of that task class
            (`response_rule`, `format_template`, `verifier` / `mode`, `limits`). By default a math task's
            `response_rule` and `format_template` follow the task's format (`task_format`): template `gsm8k` or
            answer_rule `hash` -> the response must end with `#### n`; `boxed` -> `\\boxed{}`;
            `think_answer` -> `<answer>` tags inside the think/answer format.
        template: prompt template name (`plain`, `think_answer`, `boxed`, `l1`, `hbpo`, `ruler`, ...);
            `budgets` / `budget_range`: length budgets for templates that need one, unless the row has
            `target_len_field`; `budget_seed`: seed of the per-sample budget choice.
    """

    name = "data"
    name_arg = "path"

    def __init__(
        self,
        path: str | Path,
        prompt_field: str = "prompt",
        answer_field: str = "answer",
        id_field: str | None = None,
        target_len_field: str | None = None,
        solution_field: str | None = None,
        tests_field: str | None = None,
        answer_rule: str = "raw",
        kind: str = "math",
        test_path: str | Path | None = None,
        test_fraction: float | None = None,
        template: str = "plain",
        budgets: int | Sequence[int] | None = None,
        budget_range: tuple[int, int] | None = None,
        budget_seed: int = 0,
        scoring: dict[str, Any] | None = None,
    ):
        if test_fraction is None:
            test_fraction = 0.0 if test_path is not None else DEFAULT_TEST_FRACTION
            if test_path is None:
                log.info("data task %s: holding out %.0f%% of the rows as the test split (set "
                         "task_args.test_fraction or task_args.test_path to choose)", Path(path).name,
                         100 * DEFAULT_TEST_FRACTION)
        if not (isinstance(test_fraction, (int, float)) and 0.0 <= test_fraction < 1.0):
            raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
        if test_path is not None and test_fraction:
            raise ConfigError("give either test_path or test_fraction, not both")
        fmap = FieldMap(prompt_field, answer_field, id_field, target_len_field, solution_field, tests_field, answer_rule)
        cls = TASK_KINDS[kind]
        if kind == "code" and not tests_field:
            raise ConfigError("a code data task needs tests_field (the column with the tests of each row)")
        tpl = TEMPLATES[template]
        scoring = _check_scoring(kind, cls, scoring)  # before reading the data: every reward depends on it
        self.name = f"data:{Path(path).name}"
        train = load_samples(path, fmap)
        test = load_samples(test_path, fmap) if test_path is not None else []
        if test_fraction:
            test = [s for s in train if _in_test(s.id, test_fraction)]
            train = [s for s in train if not _in_test(s.id, test_fraction)]

        def prep(s: Sample) -> Sample:
            budget = s.target_len
            if budget is None:
                budget = choose_budget(s.id, budget_seed, budgets, budget_range)
            if tpl.needs_budget and budget is None:
                raise ConfigError(
                    f"template {template!r} needs a length budget: give budgets / budget_range or target_len_field"
                )
            return apply_template(s, tpl, budget)

        if kind == "math":
            rule, fmt = task_format(template, answer_rule)
            scoring.setdefault("response_rule", rule)
            scoring.setdefault("format_template", fmt)
        self.test_source = (f"task_args.test_path={test_path}" if test_path is not None
                            else f"task_args.test_fraction={test_fraction:g}")
        self.inner: ListTask = cls([prep(s) for s in train], [prep(s) for s in test], **scoring)

    def samples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Sample]:
        """Up to `n` templated samples of `split`, shuffled by `seed`."""
        return self.inner.samples(split, n, seed)

    def score(self, sample: Sample, response: str) -> Score:
        """Score with the kind's verifier (math equivalence or sandboxed tests)."""
        return self.inner.score(sample, response)

