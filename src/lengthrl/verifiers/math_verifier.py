"""Math answer equivalence: a numeric fast path with a tolerance, then math-verify (symbolic) under a timeout.

math-verify (`math_verify.parse` / `math_verify.verify`) parses LaTeX or plain expressions to SymPy and
compares them (fractions vs decimals, `\\frac12` vs `1/2`, sets, equations `x=3` vs `3`, units removed).
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
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from lengthrl.errors import ConfigError

_NUM = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRAC = re.compile(r"(-?)\\[dt]?frac\{([-+]?\d+)\}\{([-+]?\d+)\}")


def as_number(text: str) -> Fraction | None:
    """`text` as an exact number if it is a plain one: `-1,234.5`, `3/4`, `\\frac{3}{4}`, `$5$`, `2.`; else None."""
    s = text.strip().strip("$").strip()
    s = re.sub(r"\\[,!;: ]", "", s).replace(" ", "")
    s = re.sub(r"(?<=\d),(?=\d{3}(?:\D|$))", "", s)
    if s.endswith(".") and s[:-1].replace("-", "").isdigit():
        s = s[:-1]
    if len(s) > 64:  # long digit strings go to math-verify (and keep float() finite here)
        return None
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
    return None


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
    """Is a predicted answer mathematically equal to the reference?

    Steps: (1) both sides plain numbers (`as_number`) -> equal when
    |p - g| <= max(rel_tol·max(|p|, |g|), abs_tol) (`math.isclose`) or exactly equal as fractions; (2) otherwise math-verify in a worker process with a hard `timeout_s`
    (`isolate=False`: in this process, with math-verify's signal timeout, main thread only).
    """

    timeout_s: float = 5.0
    rel_tol: float = 1e-9
    abs_tol: float = 1e-9
    float_rounding: int = 6  # math-verify's rounding of floats before comparing
    isolate: bool = True
    timeouts: int = field(default=0, init=False)  # comparisons that overran (counted as wrong)

    def __post_init__(self):
        for name in ("timeout_s", "rel_tol", "abs_tol"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or math.isnan(v) or v < 0 or (name == "timeout_s" and v == 0):
                raise ConfigError(f"MathVerifier.{name} must be a non-negative number (timeout_s > 0), got {v!r}")

    def equivalent(self, pred: str | None, gold: str | None) -> bool:
        """True when `pred` and `gold` (already extracted answers) denote the same value."""
        if not pred or not gold or not pred.strip() or not gold.strip():
            return False
        pn, gn = as_number(pred), as_number(gold)
        if pn is not None and gn is not None:
            return math.isclose(float(pn), float(gn), rel_tol=self.rel_tol, abs_tol=self.abs_tol) or pn == gn
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
