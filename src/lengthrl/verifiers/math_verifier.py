"""Math answer equivalence: exact numbers first, then math-verify (symbolic) under a timeout.

Rules, in order (docs/security.md, "Math answers", says why each one is there):

1. Not an answer: a prediction that is a statement or a combination of answers when the reference is a plain
   value: `5 = 3`, `x = 2 = 3`, `1 \\lor 2 \\lor 3`, `5 \\to 3`, `3 \\implies 3`, `x \\le 3`, `1 \\text{ or } 3`
   are wrong for the reference `3` (math-verify would take the last element). `x = 3` (one variable name,
   one `=`) is read as `3`. A reference that is itself a relation (`y = 2x + 1`) is left to math-verify.
2. Digits are ASCII: an answer with any other digit character (`３`, `٣`, `𝟑`, superscripts) is wrong.
   A prediction whose braces do not balance is wrong (a stray `}` would close the `\\boxed{` wrapper).
3. A percent sign is a unit and is dropped on both sides: `25\\%` equals `25`, and `300\\%` does not equal `3`.
4. Plain numbers (`-1,234.5`, `3/4`, `\\frac{3}{4}`, any number of digits) compare exactly as fractions, with
   one tolerance, only for decimals: a decimal reference with k digits after the point is read as rounded
   (a prediction is right when it rounds to it, |p - g| <= 0.5·10^-k, and is a fraction or has at least k
   digits itself); a decimal prediction with k digits of a reference that has no finite decimal expansion
   (1/3) is right when k >= `float_rounding` (6) and |p - g| < 10^-k (the reference rounded or truncated). Integers, and
   rationals with a finite expansion, must be equal: `1000000008` is never `1000000007`.
5. Everything else goes to math-verify (`math_verify.parse` / `math_verify.verify`), which parses LaTeX or
   plain expressions to SymPy and compares them (fractions vs decimals, `\\frac12` vs `1/2`, sets, units).
   The prediction must parse as a whole: math-verify's fallback to the last part that parses would read
   `5 \\Leftarrow 3`, `5 | 3` or `5 ~ 3` as `3` (separators no rule above lists).

Hostile LaTeX such as `2^{2^{30}}` can make SymPy compute for a very long time; math-verify's own
timeout uses `signal.alarm`, which only works in the main thread and cannot interrupt long C-level work.
So by default the comparison runs in a separate worker process that is killed (and restarted on the next
call) when it overruns `timeout_s + 0.5` s; a timed-out comparison counts as not equivalent.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from lengthrl.errors import ConfigError

_NUM = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_FRAC = re.compile(r"(-?)\\[dt]?frac\{([-+]?\d+)\}\{([-+]?\d+)\}", re.ASCII)
_MAX_DIGITS = 4000  # Python refuses int(str) beyond 4300 digits; longer numbers go to math-verify
# relations and connectives: a prediction holding one of these is a statement, not a value
_RELATION = re.compile(
    r"\\(?:lor|vee|land|wedge|to|rightarrow|Rightarrow|longrightarrow|Longrightarrow|implies|impliedby|iff|"
    r"leftrightarrow|Leftrightarrow|Longleftrightarrow|mapsto|neq|ne|le|leq|leqslant|ge|geq|geqslant|lt|gt|"
    r"approx|equiv|sim|simeq|cong|therefore|because|lnot|neg|vdash|models|in|notin|subset|subseteq|"
    r"supset|supseteq|cup|cap|setminus|pm|mp)(?![A-Za-z])"
    r"|[<>=≠≤≥≈→⇒⇔↔∨∧¬∈∪∩±]|\b(?:or|and|OR|AND)\b"
)
_VARIABLE = re.compile(r"\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?'*(?:\([A-Za-z]\))?\s*")
_PERCENT = re.compile(r"\s*(?:\\%|%|\\text\{\s*\\?%\s*\}|\\percent)\s*$")


def _non_ascii_digits(text: str) -> bool:
    """True when `text` holds a digit character that is not 0-9 (`３`, `٣`, `𝟑`, `³`, `½`)."""
    return any(not ("0" <= c <= "9") and unicodedata.category(c) in ("Nd", "No", "Nl") for c in text)


def _balanced(text: str) -> bool:
    """True when the braces of `text` (not `\\{` / `\\}`) balance. An answer with a stray `}` could close the
    `\\boxed{` that math-verify's input is wrapped in and open another (`5} \\text{ } \\boxed{3`)."""
    depth = 0
    escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _value_part(pred: str, gold: str) -> str | None:
    """`pred` as a value, given a reference `gold` that is a value: `x = 3` -> `3`; None when `pred` is a
    statement or a combination (`5 = 3`, `1 \\lor 3`, `5 \\to 3`). A `gold` that is itself a relation
    leaves `pred` as it is (math-verify compares equations)."""
    if _RELATION.search(gold):
        return pred
    if not _RELATION.search(pred):
        return pred
    lhs, eq, rhs = pred.partition("=")
    if eq and _VARIABLE.fullmatch(lhs.strip().strip("$")) and not _RELATION.search(rhs):
        return rhs
    return None


def _strip_percent(text: str) -> str:
    return _PERCENT.sub("", text)


def as_number(text: str) -> Fraction | None:
    """`text` as an exact number if it is a plain one: `-1,234.5`, `3/4`, `\\frac{3}{4}`, `$5$`, `2.`; else None.
    Only ASCII digits count."""
    s = text.strip().strip("$").strip()
    s = re.sub(r"\\[,!;: ]", "", s).replace(" ", "")
    s = re.sub(r"(?<=\d),(?=\d{3}(?:\D|$))", "", s, flags=re.ASCII)
    if s.endswith(".") and s[:-1].replace("-", "").isascii() and s[:-1].replace("-", "").isdigit():
        s = s[:-1]
    if len(s) > _MAX_DIGITS:
        return None
    try:
        m = _FRAC.fullmatch(s)
        if m:
            num, den = int(m.group(2)), int(m.group(3))
            return None if den == 0 else Fraction(-num if m.group(1) else num, den)
        parts = s.split("/")
        if len(parts) == 2 and all(_NUM.fullmatch(p) for p in parts):
            den = Fraction(parts[1])
            return None if den == 0 else Fraction(parts[0]) / den
        if _NUM.fullmatch(s):
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _decimals(text: str) -> int | None:
    """Digits after the decimal point when `text` is a plain decimal (`3.14` -> 2), else None (integers,
    fractions)."""
    s = text.strip().strip("$").strip().replace(" ", "")
    m = _NUM.fullmatch(s.replace(",", ""))
    if not m or "." not in s:
        return None
    return len(s.split(".", 1)[1])


def _terminates(q: Fraction) -> bool:
    """True when `q` has a finite decimal expansion (its denominator has no prime factor but 2 and 5)."""
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def numbers_equal(pred: str, pn: Fraction, gold: str, gn: Fraction, min_digits: int = 6) -> bool:
    """Rule 4 of the module docstring: exact, except for decimals read as rounded."""
    if pn == gn:
        return True
    kg, kp = _decimals(gold), _decimals(pred)
    if kg is not None:  # the reference was written rounded to kg digits
        return (kp is None or kp >= kg) and abs(pn - gn) * 2 * 10**kg <= 1
    if kp is not None and not _terminates(gn):  # an exact reference with no finite decimal expansion
        return kp >= min_digits and abs(pn - gn) * 10**kp < 1
    return False


class _Worker:
    """One math-verify worker process (`_math_worker.py`), started lazily, killed and restarted on overrun."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.lock = threading.Lock()

    def _start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(_WORKER_SRC)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not hit by the caller's Ctrl-C; killed explicitly
        )
        self.buf = b""

    def _stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                f.close()
        self.proc = None

    def call(self, msg: list, deadline_s: float, start_budget_s: float = 60.0) -> bool | None:
        """Result of one comparison, or None when it overran `deadline_s` (the worker is then killed)."""
        with self.lock:
            budget = deadline_s
            if self.proc is None or self.proc.poll() is not None:
                self._stop()
                self._start()
                budget += start_budget_s  # the first call also pays for importing sympy
            end = time.monotonic() + budget
            try:
                self.proc.stdin.write((json.dumps(msg) + "\n").encode())
                self.proc.stdin.flush()
                fd = self.proc.stdout.fileno()
                while b"\n" not in self.buf:
                    left = end - time.monotonic()
                    if left <= 0 or not select.select([fd], [], [], left)[0]:
                        break
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        break
                    self.buf += chunk
            except OSError:
                pass
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                return line.strip() == b"1"
            self._stop()
            return None

    def close(self):
        with self.lock:
            self._stop()


_WORKER = _Worker()
atexit.register(_WORKER.close)
_WORKER_SRC = Path(__file__).with_name("_math_worker.py")


@dataclass
class MathVerifier:
    """Is a predicted answer mathematically equal to the reference? The rules are the module docstring's:
    statements are not answers, ASCII digits only, `%` dropped, plain numbers exact (decimals read as
    rounded), then math-verify in a worker process with a hard `timeout_s` (`isolate=False`: in this
    process, with math-verify's signal timeout, main thread only).
    """

    timeout_s: float = 5.0
    float_rounding: int = 6  # math-verify's rounding of floats; also the digits a decimal of 1/3 needs
    isolate: bool = True
    timeouts: int = field(default=0, init=False)  # comparisons that overran (counted as wrong)

    def __post_init__(self):
        v = self.timeout_s
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v) or v <= 0:
            raise ConfigError(f"MathVerifier.timeout_s must be a positive number of seconds, got {v!r}")
        r = self.float_rounding
        if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r <= 100:
            raise ConfigError(f"MathVerifier.float_rounding must be an integer in [0, 100], got {r!r}")

    def equivalent(self, pred: str | None, gold: str | None) -> bool:
        """True when `pred` and `gold` (already extracted answers) denote the same value."""
        if not pred or not gold or not pred.strip() or not gold.strip():
            return False
        if _non_ascii_digits(pred) or _non_ascii_digits(gold) or not _balanced(pred):
            return False
        value = _value_part(pred, gold)
        if value is None or not value.strip():
            return False
        pred, gold = _strip_percent(value), _strip_percent(gold)
        pn, gn = as_number(pred), as_number(gold)
        if pn is not None and gn is not None:
            return numbers_equal(pred, pn, gold, gn, self.float_rounding)
        secs = max(1, int(self.timeout_s))
        msg = [pred, gold, secs, self.float_rounding]
        if not self.isolate:
            is_main = threading.current_thread() is threading.main_thread()
            from lengthrl.verifiers._math_worker import equal

            try:
                return equal(pred, gold, secs if is_main else 0, self.float_rounding)
            except Exception:
                return False
        out = _WORKER.call(msg, self.timeout_s + 0.5)
        if out is None:
            self.timeouts += 1
            return False
        return out
