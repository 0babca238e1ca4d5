"""Code tasks: a response holds a Python program, scored by running it against tests in the sandbox."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample, Score
from lengthrl.tasks.math_task import ListTask
from lengthrl.verifiers.sandbox import SandboxLimits, check_sandbox, limits_from, run_io_tests, run_program

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(response: str) -> tuple[str, bool]:
    """The program in a response: the last fenced ```python block (True), else the whole text (False)."""
    blocks = _FENCE.findall(response)
    if blocks:
        return blocks[-1], True
    return response, False


class CodeTask(ListTask):
    """Programming problems. A sample's tests are either assert snippets in `sample.meta["tests"]` (run by a
    judge process that never executes the program; the program's values come back as plain values, see
    docs/security.md) or stdin/stdout cases in `sample.meta["io_tests"]` (a list of (input, expected output)
    pairs, one run each, judged here from the output).

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
        self.limits = limits_from(limits)
        check_sandbox()  # without namespaces (and no opt-in) the run is refused here, not once per response

    def score(self, sample: Sample, response: str) -> Score:
        """Run the response's program against the sample's tests."""
        tests, io = sample.meta.get("tests"), sample.meta.get("io_tests")
        code, fenced = extract_code(response)
        if io:
            if not all(isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in io):
                raise ConfigError(f"sample {sample.id!r}: meta['io_tests'] must be a list of (input, output) strings")
            passed = run_io_tests(code, [tuple(c) for c in io], limits=self.limits)
        elif tests and all(isinstance(t, str) for t in tests):
            res = run_program(code, list(tests), limits=self.limits)
            passed = [False] * len(tests) if res.status in ("timeout", "output_limit") else res.passed
        else:
            raise ConfigError(
                f"sample {sample.id!r} has no tests: give meta['tests'] (assert snippets) or meta['io_tests']"
            )
        all_ok = all(passed)
        reward = sum(passed) / len(passed) if self.mode == "fraction" else float(all_ok)
        return Score(correct=all_ok, reward=reward, format_ok=fenced, extracted=code)
