"""Length-collapse detection, live (one `update` per training step) or offline on a run's metrics.jsonl.

Two signs of collapse are watched over a sliding window of the last `window` logged steps:

1. length collapse: the mean response length (`len/mean`) falls by more than `drop_threshold` (a fraction)
   from the start of the window to its end, while accuracy (`acc`) rises by no more than `acc_tolerance`.
   Start and end are the means of the first and last `max(1, window // 4)` steps of the window (smoothing).
   A shorter policy that also got more accurate is doing what length penalties intend, so it is not flagged.
2. entropy collapse: the mean policy entropy of the last `max(1, window // 4)` steps falls below
   `entropy_ratio` times its reference, the mean entropy of the first `window` steps of the run.

A warning is raised at most once per `cooldown` steps (default: `window`). `metrics()` gives the current
signals as log metrics: collapse/len_drop, collapse/acc_gain, collapse/entropy_ratio, collapse/flag.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from lengthrl.analysis.values import as_number
from lengthrl.errors import ConfigError


@dataclass
class CollapseWarning:
    """One detection: which sign fired at which step, with the numbers behind it."""

    step: int
    kind: str  # "length" or "entropy"
    message: str  # one line for the training log
    len_drop: float | None = None  # fractional fall of mean length over the window
    acc_gain: float | None = None  # accuracy change over the window
    entropy_ratio: float | None = None  # recent entropy / reference entropy


def _value(step_metrics: Mapping, key: str, step: int) -> float | None:
    return as_number(step_metrics.get(key), f"step {step}: metric {key!r}", "; the trainer logged an invalid value")


class CollapseDetector:
    """Watch `len/mean`, `acc` and `entropy` step by step and warn on length or entropy collapse.

    window: steps in the sliding window (>= 2). drop_threshold: fractional length fall that counts as collapse
    (0.3 = 30% shorter over the window). acc_tolerance: an accuracy rise above this excuses a length fall.
    entropy_ratio: entropy below this fraction of its early reference is a collapse (None: not checked).
    cooldown: minimum steps between two warnings (default `window`). Missing metrics are skipped.
    """

    def __init__(self, window: int = 20, drop_threshold: float = 0.3, acc_tolerance: float = 0.02,
                 entropy_ratio: float | None = 0.2, cooldown: int | None = None):
        if window < 2:
            raise ConfigError(f"CollapseDetector: window must be >= 2 steps, got {window}")
        if not 0.0 < drop_threshold < 1.0:
            raise ConfigError(f"CollapseDetector: drop_threshold is a fraction in (0, 1), got {drop_threshold}")
        if entropy_ratio is not None and not 0.0 < entropy_ratio < 1.0:
            raise ConfigError(f"CollapseDetector: entropy_ratio is a fraction in (0, 1) or None, got {entropy_ratio}")
        self.window, self.drop_threshold, self.acc_tolerance = window, drop_threshold, acc_tolerance
        self.entropy_ratio = entropy_ratio
        self.cooldown = window if cooldown is None else cooldown
        self._len: deque[tuple[float, float | None]] = deque(maxlen=window)  # (len/mean, acc)
        self._ent: deque[float] = deque(maxlen=max(1, window // 4))
        self._ent_ref: list[float] = []
        self._last_warn = -10**9
        self._n = 0
        self.state: dict[str, float] = {}

    def update(self, step_metrics: Mapping) -> CollapseWarning | None:
        """Feed one step's metrics (a metrics.jsonl row); return a warning when a collapse is detected."""
        step = int(step_metrics.get("step", self._n))
        self._n += 1
        length, acc = _value(step_metrics, "len/mean", step), _value(step_metrics, "acc", step)
        ent = _value(step_metrics, "entropy", step)
        warnings: list[CollapseWarning] = []
        self.state = {"collapse/flag": 0.0}
        if length is not None:
            self._len.append((length, acc))
            w = self._check_length(step)
            if w:
                warnings.append(w)
        if ent is not None:
            if len(self._ent_ref) < self.window:
                self._ent_ref.append(ent)
            self._ent.append(ent)
            w = self._check_entropy(step)
            if w:
                warnings.append(w)
        if warnings and step - self._last_warn >= self.cooldown:
            self._last_warn = step
            self.state["collapse/flag"] = 1.0
            return warnings[0]
        return None

    def _check_length(self, step: int) -> CollapseWarning | None:
        if len(self._len) < self.window:
            return None
        q = max(1, self.window // 4)
        lens = np.array([x[0] for x in self._len])  # [window]
        start, end = lens[:q].mean(), lens[-q:].mean()
        drop = 0.0 if start <= 0 else float((start - end) / start)
        accs = [x[1] for x in self._len]
        head, tail = [a for a in accs[:q] if a is not None], [a for a in accs[-q:] if a is not None]
        gain = float(np.mean(tail) - np.mean(head)) if head and tail else None
        self.state["collapse/len_drop"] = drop
        if gain is not None:
            self.state["collapse/acc_gain"] = gain
        if drop > self.drop_threshold and (gain is None or gain <= self.acc_tolerance):
            acc_txt = "accuracy not logged" if gain is None else f"accuracy {gain:+.3f}"
            return CollapseWarning(step, "length", f"length collapse at step {step}: mean length fell "
                                   f"{100 * drop:.0f}% over {self.window} steps ({start:.1f} -> {end:.1f}) "
                                   f"with {acc_txt}", len_drop=drop, acc_gain=gain)
        return None

    def _check_entropy(self, step: int) -> CollapseWarning | None:
        if self.entropy_ratio is None or len(self._ent_ref) < self.window:
            return None
        ref = float(np.mean(self._ent_ref))
        if ref <= 0:
            return None
        ratio = float(np.mean(self._ent)) / ref
        self.state["collapse/entropy_ratio"] = ratio
        if ratio < self.entropy_ratio:
            return CollapseWarning(step, "entropy", f"entropy collapse at step {step}: entropy is "
                                   f"{100 * ratio:.0f}% of its early level {ref:.3g}", entropy_ratio=ratio)
        return None

    def metrics(self) -> dict[str, float]:
        """The latest signals as log metrics (collapse/len_drop, collapse/acc_gain, collapse/entropy_ratio,
        collapse/flag); keys appear once enough steps have been seen."""
        return dict(self.state)


def scan_collapse(rows: Iterable[Mapping], **detector_kwargs) -> list[CollapseWarning]:
    """Run a fresh `CollapseDetector(**detector_kwargs)` over metric rows (e.g. a metrics.jsonl) offline."""
    det = CollapseDetector(**detector_kwargs)
    return [w for w in (det.update(r) for r in rows) if w is not None]
