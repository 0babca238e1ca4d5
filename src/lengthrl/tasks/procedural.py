"""Built-in procedural reasoning tasks: small, exactly verifiable problems made from a seed.

Each task writes worked solutions in three styles of very different length, so that a model warmed up on
them has length to move in both directions under RL:

- ``concise``: the answer almost directly (``<answer>34</answer>``);
- ``steps``: one line per step, then the answer;
- ``verbose``: every step followed by a self-check (``check ... ok``) and a closing sentence.

A response is reasoning, then ``<answer>N</answer>``, then EOS. Scoring is exact match of the extracted answer
(the last ``<answer>...</answer>``; ``#### N`` is accepted too). Problems are assigned to the train or test
split by a hash of their canonical form, so the splits are disjoint whatever the seed; sampling is
deterministic in ``(task knobs, split, seed)``.
"""

from __future__ import annotations

import hashlib
import random
import re
from abc import abstractmethod
from dataclasses import dataclass

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample, Score, Task

STYLES: tuple[str, ...] = ("concise", "steps", "verbose")
SPLITS: tuple[str, ...] = ("train", "test")
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_HASH_RE = re.compile(r"####\s*([^\n]*)")


def extract_answer(response: str) -> str | None:
    """The answer a response gives: the text of its last ``<answer>...</answer>``, else after ``####``."""
    tags = _ANSWER_RE.findall(response)
    if tags:
        return tags[-1].strip()
    hashes = _HASH_RE.findall(response)
    return hashes[-1].strip() if hashes else None


def answer_tag(answer: str) -> str:
    """The closing line of every trace."""
    return f"<answer>{answer}</answer>"


@dataclass
class Problem:
    """One generated problem: its canonical key (for split assignment), prompt, answer and traces by style."""

    key: str
    prompt: str
    answer: str
    traces: dict[str, str]
    level: int | None = None  # difficulty level, for tasks that have one (kept in Sample.meta["level"])


def _check_range(task: str, lo_name: str, lo: int, hi_name: str, hi: int, minimum: int) -> None:
    if lo < minimum or hi < lo:
        raise ConfigError(
            f"task {task!r}: need {minimum} <= {lo_name} <= {hi_name}, got {lo_name}={lo}, {hi_name}={hi}; "
            f"fix the difficulty knobs"
        )


class ProceduralTask(Task):
    """Base class: subclasses implement `make_problem(rng)`; this class handles splits, styles and scoring.

    Args:
        style_weights: relative frequency of the ``concise``/``steps``/``verbose`` solution styles in
            `Sample.solution` (all three are always in ``sample.meta["traces"]``).
        test_fraction: share of the problem space reserved for the test split (by hash of the problem).
    """

    name = "procedural"
    default_size = {"train": 5000, "test": 500}

    def __init__(self, style_weights: tuple[float, float, float] = (1.0, 1.0, 1.0), test_fraction: float = 0.1):
        if len(style_weights) != len(STYLES) or any(not w >= 0 for w in style_weights) or sum(style_weights) <= 0:
            raise ConfigError(
                f"task {self.name!r}: style_weights must be {len(STYLES)} non-negative numbers (for "
                f"{', '.join(STYLES)}) with a positive sum, got {style_weights!r}"
            )
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"task {self.name!r}: test_fraction must be in (0, 1), got {test_fraction!r}")
        self.style_weights = tuple(float(w) for w in style_weights)
        self.test_fraction = float(test_fraction)

    @abstractmethod
    def make_problem(self, rng: random.Random) -> Problem:
        """Draw one problem from the task's distribution."""

    def split_of(self, key: str) -> str:
        """``"test"`` or ``"train"``: a fixed function of the problem's canonical key."""
        h = int.from_bytes(hashlib.sha256(f"{self.name}|{key}".encode()).digest()[:8], "big")
        return "test" if (h % 1_000_000) < self.test_fraction * 1_000_000 else "train"

    def samples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Sample]:
        """Up to `n` distinct problems of `split`, deterministic in `seed` (default size: `default_size`)."""
        if split not in SPLITS:
            raise ConfigError(f"task {self.name!r}: unknown split {split!r}; valid: {', '.join(SPLITS)}")
        n = self.default_size[split] if n is None else n
        if n < 0:
            raise ConfigError(f"task {self.name!r}: n must be >= 0, got {n}")
        rng = random.Random(f"{self.name}|{split}|{seed}")
        out: list[Sample] = []
        seen: set[str] = set()
        misses = 0
        while len(out) < n and misses < 50 * n + 1000:
            p = self.make_problem(rng)
            if p.key in seen or self.split_of(p.key) != split:
                misses += 1
                continue
            seen.add(p.key)
            style = rng.choices(STYLES, weights=self.style_weights)[0]
            meta = {"task": self.name, "style": style, "traces": dict(p.traces)}
            if p.level is not None:
                meta["level"] = p.level
            out.append(
                Sample(
                    id=f"{self.name}:{p.key}",
                    prompt=p.prompt,
                    answer=p.answer,
                    solution=p.traces[style],
                    meta=meta,
                )
            )
        return out  # fewer than n only when the problem space of `split` is exhausted

    def score(self, sample: Sample, response: str) -> Score:
        """Exact match of the extracted answer; ``format_ok`` when an answer was found."""
        got = extract_answer(response)
        ok = got is not None and got == sample.answer.strip()
        return Score(correct=ok, reward=1.0 if ok else 0.0, format_ok=got is not None, extracted=got)


class ArithChain(ProceduralTask):
    """Chained +, -, * of small numbers, evaluated left to right: ``7+5*3-2`` = ((7+5)*3)-2 = 34.

    Knobs: number of operations in [min_steps, max_steps], operands in [1, max_operand], every intermediate
    value kept in [0, max_value] (subtraction never goes negative, multiplication never overflows).
    """

    name = "arith_chain"

    def __init__(self, min_steps: int = 1, max_steps: int = 3, max_operand: int = 6, max_value: int = 40, **kw):
        super().__init__(**kw)
        _check_range(self.name, "min_steps", min_steps, "max_steps", max_steps, 1)
        _check_range(self.name, "2", 2, "max_operand", max_operand, 2)
        if max_value < max_operand:
            raise ConfigError(f"task {self.name!r}: max_value ({max_value}) must be >= max_operand ({max_operand})")
        self.min_steps, self.max_steps = min_steps, max_steps
        self.max_operand, self.max_value = max_operand, max_value

    def make_problem(self, rng: random.Random) -> Problem:
        value = rng.randint(1, self.max_operand)
        expr, steps_txt, verbose_txt = str(value), [], []
        for _ in range(rng.randint(self.min_steps, self.max_steps)):
            options = []
            for op in "+-*":
                for b in range(1 if op != "*" else 2, self.max_operand + 1):
                    r = {"+": value + b, "-": value - b, "*": value * b}[op]
                    if 0 <= r <= self.max_value:
                        options.append((op, b, r))
            op, b, r = rng.choice(options)
            inverse = {"+": f"{r}-{b}={value}", "-": f"{r}+{b}={value}", "*": f"{r}/{b}={value}"}[op]
            steps_txt.append(f"{value}{op}{b}={r}")
            verbose_txt.append(f"{value}{op}{b}={r}, check {inverse} ok")
            expr += f"{op}{b}"
            value = r
        ans = str(value)
        traces = {
            "concise": answer_tag(ans),
            "steps": "\n".join(steps_txt + [answer_tag(ans)]),
            "verbose": "\n".join(verbose_txt + [f"so the result is {ans}", answer_tag(ans)]),
        }
        return Problem(key=expr, prompt=f"left to right: {expr}\n", answer=ans, traces=traces)


class CountLetters(ProceduralTask):
    """How many times a letter occurs in a word of random letters: ``count a in: banana`` -> 3.

    Knobs: word length in [min_len, max_len], letters drawn from `alphabet`.
    """

    name = "count_letters"

    def __init__(self, min_len: int = 3, max_len: int = 7, alphabet: str = "abcd", **kw):
        super().__init__(**kw)
        _check_range(self.name, "min_len", min_len, "max_len", max_len, 1)
        if len(set(alphabet)) < 2 or not alphabet.isalpha() or not alphabet.islower():
            raise ConfigError(f"task {self.name!r}: alphabet must hold >= 2 distinct lowercase letters, got {alphabet!r}")
        self.min_len, self.max_len, self.alphabet = min_len, max_len, "".join(sorted(set(alphabet)))

    def make_problem(self, rng: random.Random) -> Problem:
        word = "".join(rng.choice(self.alphabet) for _ in range(rng.randint(self.min_len, self.max_len)))
        letter = rng.choice(self.alphabet)
        count, steps, verbose, where = 0, [], [], []
        for i, ch in enumerate(word, 1):
            if ch == letter:
                count += 1
                where.append(str(i))
                verbose.append(f"{ch} is {letter}, {count}")
            else:
                verbose.append(f"{ch} not {letter}, {count}")
            steps.append(f"{ch}{count}")
        ans = str(count)
        check = f"check: {letter} at {','.join(where) or 'none'}, total {count} ok"
        traces = {
            "concise": answer_tag(ans),
            "steps": " ".join(steps) + "\n" + answer_tag(ans),
            "verbose": "\n".join(verbose + [check, answer_tag(ans)]),
        }
        return Problem(key=f"{letter}:{word}", prompt=f"count {letter} in: {word}\n", answer=ans, traces=traces)


class SortDigits(ProceduralTask):
    """Sort a list of digits ascending: ``sort: 5391`` -> 1359 (selection of the minimum, one per line).

    Knobs: number of digits in [min_len, max_len].
    """

    name = "sort_digits"

    def __init__(self, min_len: int = 3, max_len: int = 5, **kw):
        super().__init__(**kw)
        _check_range(self.name, "min_len", min_len, "max_len", max_len, 2)
        self.min_len, self.max_len = min_len, max_len

    def make_problem(self, rng: random.Random) -> Problem:
        digits = [rng.randint(0, 9) for _ in range(rng.randint(self.min_len, self.max_len))]
        left, steps = list(digits), []
        while left:
            m = min(left)
            left.remove(m)
            steps.append(f"min {m}, left {''.join(map(str, left)) or 'none'}")
        ans = "".join(map(str, sorted(digits)))
        check = f"check: {'<='.join(ans)} ok, {len(ans)} digits ok"
        traces = {
            "concise": answer_tag(ans),
            "steps": "\n".join(steps + [answer_tag(ans)]),
            "verbose": "\n".join([f"{s}, ok" for s in steps] + [check, answer_tag(ans)]),
        }
        key = "".join(map(str, digits))
        return Problem(key=key, prompt=f"sort: {key}\n", answer=ans, traces=traces)


class LongAdd(ProceduralTask):
    """Add two numbers of D digits, D in [min_digits, max_digits]: ``add: 4817+2596`` -> 7413.

    The difficulty level is D (``Sample.meta["level"]``). The ``steps`` trace is column addition from the
    right, one line per column with its carry (``1: 7+6+0=13 w3 c1``), then the answer; ``verbose`` adds a
    check of each column and the digits read back. A small model can guess a short sum in one go, but the
    carries chain across columns, so the step-by-step trace beats the direct guess by more the more digits
    there are: on this task a longer response buys accuracy where the problem is hard.

    Knobs: digits per operand in [min_digits, max_digits] (the level is drawn uniformly).
    """

    name = "long_add"

    def __init__(self, min_digits: int = 1, max_digits: int = 6, **kw):
        super().__init__(**kw)
        _check_range(self.name, "min_digits", min_digits, "max_digits", max_digits, 1)
        if max_digits > 30:
            raise ConfigError(f"task {self.name!r}: max_digits must be <= 30, got {max_digits}")
        self.min_digits, self.max_digits = min_digits, max_digits

    def make_problem(self, rng: random.Random) -> Problem:
        d = rng.randint(self.min_digits, self.max_digits)
        lo = 10 ** (d - 1) if d > 1 else 0
        a, b = rng.randint(lo, 10 ** d - 1), rng.randint(lo, 10 ** d - 1)
        da, db = str(a)[::-1], str(b)[::-1]
        carry, steps, verbose, written = 0, [], [], []
        for i in range(d):
            x, y = int(da[i]), int(db[i])
            t = x + y + carry
            steps.append(f"{i + 1}: {x}+{y}+{carry}={t} w{t % 10} c{t // 10}")
            verbose.append(f"{i + 1}: {x}+{y}+{carry}={t} w{t % 10} c{t // 10}, check {t}-{x}-{y}={carry} ok")
            written.append(str(t % 10))
            carry = t // 10
        if carry:
            steps.append(f"{d + 1}: carry {carry} w{carry}")
            verbose.append(f"{d + 1}: carry {carry} w{carry}, ok")
            written.append(str(carry))
        ans = str(a + b)
        if int("".join(reversed(written))) != a + b:  # the trace must spell the answer
            raise AssertionError(f"long_add trace of {a}+{b} reads {''.join(reversed(written))}")
        traces = {
            "concise": answer_tag(ans),
            "steps": "\n".join(steps + [answer_tag(ans)]),
            "verbose": "\n".join(verbose + [f"read back: {''.join(reversed(written))}", answer_tag(ans)]),
        }
        return Problem(key=f"{a}+{b}", prompt=f"add: {a}+{b}\n", answer=ans, traces=traces, level=d)


class AddChain(ProceduralTask):
    """Add a chain of N single-digit numbers: ``sum: 3+5+8+2`` -> 18; the difficulty level is N.

    The ``steps`` trace adds one term per line, ``3+5=8`` / ``8+8=16`` / ``16+2=18``, then the answer: each
    line copies the running sum from the line above and the next term from the prompt, and adds a digit. The
    ``verbose`` trace also writes the terms still to add after each line (``8+8=16, left 2``), a copy from the
    line above rather than from the prompt. The direct guess must add all N terms in one go, which gets harder
    with every term, while a trace line is the same small step at every level: the longer response buys more
    accuracy the more terms there are. Trace length grows linearly in N (``steps``) or quadratically
    (``verbose``).

    With ``modulus`` m > 0 the task is the sum modulo m (``sum mod 10: 3+5+8+2`` -> 8) and every line keeps the
    running value modulo m (``8+8=6``): each line is then a lookup in an m x m table, while the direct guess of
    a long chain is near chance (1/m), so the trace's advantage grows with N from about zero at N = 2.

    With ``labelled`` the prompt names each term with a letter (``sum mod 10: a3 b5 c8 d2``) and each trace line
    starts with the label of the term it adds (``a 3`` / ``b 3+5=8`` / ``c 8+8=6`` / ``d 6+2=8``; verbose:
    ``b 3+5=8, left c8 d2``). The next label is the successor of the last, and the term is found by matching
    that label in the prompt, a content lookup (an induction head), instead of counting lines to index the
    prompt by position, which a small model is slow to learn.

    Knobs: number of terms in [min_terms, max_terms] (the level is drawn uniformly), terms in [1, max_operand],
    `modulus` (0 = the plain sum), `labelled` (max_terms <= 26 then).
    """

    name = "add_chain"

    def __init__(self, min_terms: int = 2, max_terms: int = 8, max_operand: int = 9, modulus: int = 0,
                 labelled: bool = False, **kw):
        super().__init__(**kw)
        if not isinstance(labelled, bool):
            raise ConfigError(f"task {self.name!r}: labelled must be true or false, got {labelled!r}")
        if labelled and max_terms > 26:
            raise ConfigError(f"task {self.name!r}: labelled terms take the letters a-z, so max_terms must be "
                              f"<= 26, got {max_terms}")
        self.labelled = labelled
        if modulus != 0 and not 2 <= modulus <= 100:
            raise ConfigError(f"task {self.name!r}: modulus must be 0 (the plain sum) or in [2, 100], got {modulus}")
        self.modulus = modulus
        _check_range(self.name, "min_terms", min_terms, "max_terms", max_terms, 2)
        if max_terms > 30:
            raise ConfigError(f"task {self.name!r}: max_terms must be <= 30, got {max_terms}")
        if not 2 <= max_operand <= 9:
            raise ConfigError(f"task {self.name!r}: max_operand must be in [2, 9] (single digits), got {max_operand}")
        self.min_terms, self.max_terms, self.max_operand = min_terms, max_terms, max_operand

    def make_problem(self, rng: random.Random) -> Problem:
        n = rng.randint(self.min_terms, self.max_terms)
        terms = [rng.randint(1, self.max_operand) for _ in range(n)]
        m = self.modulus
        total, steps, verbose = terms[0] % m if m else terms[0], [], []
        lab = self.labelled
        names = [chr(ord("a") + i) for i in range(n)]
        if lab:  # the first line reads the first term
            steps.append(f"a {total}")
            verbose.append(f"a {total}, left " + " ".join(f"{c}{t}" for c, t in zip(names[1:], terms[1:])))
        for i, x in enumerate(terms[1:], 2):
            nxt = (total + x) % m if m else total + x
            line = f"{names[i - 1]} {total}+{x}={nxt}" if lab else f"{total}+{x}={nxt}"
            total = nxt
            rest = (" ".join(f"{c}{t}" for c, t in zip(names[i:], terms[i:])) if lab
                    else "+".join(map(str, terms[i:])))
            steps.append(line)
            verbose.append(f"{line}, left {rest}" if rest else f"{line}, done")
        ans = str(total)
        if total != (sum(terms) % m if m else sum(terms)):  # the trace must reach the sum
            raise AssertionError(f"add_chain trace of {terms} reads {total}")
        traces = {
            "concise": answer_tag(ans),
            "steps": "\n".join(steps + [answer_tag(ans)]),
            "verbose": "\n".join(verbose + [answer_tag(ans)]),
        }
        key = "+".join(map(str, terms))
        head = f"sum mod {m}" if m else "sum"
        shown = " ".join(f"{c}{t}" for c, t in zip(names, terms)) if lab else key
        return Problem(key=key, prompt=f"{head}: {shown}\n", answer=ans, traces=traces, level=n)


# name -> class; the task registry imports this dict.
PROCEDURAL_TASKS: dict[str, type[ProceduralTask]] = {
    cls.name: cls for cls in (ArithChain, CountLetters, SortDigits, LongAdd, AddChain)
}


def make_procedural_task(name: str, **knobs) -> ProceduralTask:
    """Build a procedural task by name with its difficulty knobs; unknown names list the valid ones."""
    if name not in PROCEDURAL_TASKS:
        raise ConfigError(f"unknown procedural task {name!r}; valid names: {', '.join(PROCEDURAL_TASKS)}")
    try:
        return PROCEDURAL_TASKS[name](**knobs)
    except TypeError as e:
        raise ConfigError(f"procedural task {name!r}: bad knob(s) {sorted(knobs)}: {e}") from None
