"""Code tasks: a response holds a Python program, scored by running it against tests in the sandbox."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample, Score
from lengthrl.tasks.math_task import ListTask
from lengthrl.verifiers.sandbox import SandboxLimits, run_program

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(response: str) -> tuple[str, bool]:
    """The program in a response: the last fenced ```python block (True), else the whole text (False)."""
    blocks = _FENCE.findall(response)
    if blocks:
        return blocks[-1], True
    return response, False


class CodeTask(ListTask):
    """Programming problems; each sample's tests are assert snippets in `sample.meta["tests"]`.

    reward = fraction of tests passed (`mode="fraction"`) or 1.0 only when all pass (`mode="all"`);
    a run that times out or floods the output gets 0. `correct` means every test passed.
    """

    name = "code"

    def __init__(
        self,
        train: Sequence[Sample],
        test: Sequence[Sample] | None = None,
        mode: str = "fraction",
        limits: SandboxLimits | None = None,
    ):
        super().__init__(train, test)
        if mode not in ("fraction", "all"):
            raise ConfigError(f"code task mode must be 'fraction' or 'all', got {mode!r}")
        self.mode = mode
        self.limits = limits or SandboxLimits()

    def score(self, sample: Sample, response: str) -> Score:
        """Run the response's program against the sample's tests."""
        tests = sample.meta.get("tests")
        if not tests or not all(isinstance(t, str) for t in tests):
            raise ConfigError(f"sample {sample.id!r} has no tests: meta['tests'] must be a non-empty list of strings")
        code, fenced = extract_code(response)
        res = run_program(code, list(tests), limits=self.limits)
        if res.status in ("timeout", "output_limit"):
            reward = 0.0
        else:
            reward = res.fraction if self.mode == "fraction" else float(res.all_passed)
        return Score(correct=res.all_passed and reward > 0, reward=reward, format_ok=fenced, extracted=code)
