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


@TASKS.register("dllm_fork")
class ForkTask(Task):
    """Name the largest of `options` numbers and copy it: ``max a47 b52=`` -> ``b52``.

    The response opens with a *fork* token, the letter of the chosen option, and continues with that option's
    digits, so the first token decides the whole path: after ``a`` the model copies 47, after ``b`` 52, and only
    one path is correct. A small model is unsure at the fork when the numbers are close (same leading digit,
    `close_fraction` of the problems), and each digit after the fork is as unsure as the fork itself (it depends
    on the path). That is the setting of the flexibility trap (arXiv 2601.15165): AR-order sampling draws the fork
    first, at its own probabilities, while confidence-order sampling commits the most probable digits of the
    likelier path first and so tends to settle the fork on that path.

    Problems are tuples of distinct `digits`-digit numbers; train and test are told apart by a hash of the
    problem (disjoint whatever the seed). Scoring is exact match of letter and number (``b52``).
    """

    name = "dllm_fork"
    default_size = {"train": 2000, "test": 200}

    def __init__(self, options: int = 2, digits: int = 2, close_fraction: float = 0.5, test_fraction: float = 0.2):
        if not 2 <= options <= 5:
            raise ConfigError(f"task 'dllm_fork': options must be in [2, 5], got {options}")
        if not 1 <= digits <= 3:
            raise ConfigError(f"task 'dllm_fork': digits must be in [1, 3], got {digits}")
        if not 0.0 <= close_fraction <= 1.0:
            raise ConfigError(f"task 'dllm_fork': close_fraction must be in [0, 1], got {close_fraction}")
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"task 'dllm_fork': test_fraction must be in (0, 1), got {test_fraction}")
        self.options, self.digits, self.close_fraction, self.test_fraction = options, digits, close_fraction, test_fraction
        self.letters = "abcde"[:options]

    def _problem(self, rng: random.Random) -> tuple[int, ...]:
        lo, hi = (10 ** (self.digits - 1) if self.digits > 1 else 0), 10 ** self.digits - 1
        if self.digits > 1 and rng.random() < self.close_fraction:  # same leading digit: compare the rest
            lead = rng.randint(1, 9) * 10 ** (self.digits - 1)
            return tuple(lead + x for x in rng.sample(range(10 ** (self.digits - 1)), self.options))
        return tuple(rng.sample(range(lo, hi + 1), self.options))

    def split_of(self, nums: tuple[int, ...]) -> str:
        import hashlib

        h = int.from_bytes(hashlib.sha256(f"{self.name}|{nums}".encode()).digest()[:8], "big")
        return "test" if h % 1_000_000 < self.test_fraction * 1_000_000 else "train"

    def samples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Sample]:
        if split not in self.default_size:
            raise ConfigError(f"task 'dllm_fork': split must be one of {', '.join(self.default_size)}, got {split!r}")
        n = self.default_size[split] if n is None else n
        if n < 0:
            raise ConfigError(f"task 'dllm_fork': n must be >= 0, got {n}")
        rng = random.Random(f"{self.name}|{self.options}|{self.digits}|{self.close_fraction}|{split}|{seed}")
        out, seen, misses = [], set(), 0
        while len(out) < n and misses < 50 * n + 1000:
            nums = self._problem(rng)
            if nums in seen or self.split_of(nums) != split:
                misses += 1
                continue
            seen.add(nums)
            i = max(range(self.options), key=nums.__getitem__)
            answer = f"{self.letters[i]}{nums[i]}"
            prompt = "max " + " ".join(f"{c}{x}" for c, x in zip(self.letters, nums)) + "="
            out.append(Sample(id=f"{self.name}:{','.join(map(str, nums))}", prompt=prompt, answer=answer,
                              solution=answer, meta={"numbers": list(nums), "close": len({str(x)[0] for x in nums}) == 1}))
        return out

    def score(self, sample: Sample, response: str) -> Score:
        got = response.strip()
        ok = got == sample.answer
        return Score(correct=ok, reward=float(ok), format_ok=len(got) > 1 and got[0] in self.letters
                     and got[1:].isdigit(), extracted=got)
