"""Verdicts about RL methods, judged over independent training seeds.

One training run is one sample of an RL method: two runs with different seeds end at different lengths and
accuracies, and that run-to-run spread dominates the noise of evaluating either run on a few hundred prompts.
So a claim ("LUSPO ends longer than GSPO") is judged on one value per training seed (that run's held-out
metric), with a Student-t interval over the seeds:

    mean m = (1/n) Σ_s x_s,  s.e. = sd(x) / sqrt(n),  CI = m ± t_{0.975, n-1} · s.e.            (one recipe)
    d = m_b - m_a,  s.e. = sqrt(sd_a²/n_a + sd_b²/n_b),  df by Welch-Satterthwaite,  CI = d ± t · s.e. (two)

and the status compares the interval with the paper's threshold: ``reproduced`` when the whole interval lies on
the paper's side, ``not_reproduced`` when the whole interval lies on the other side, ``inconclusive`` when it
straddles the threshold (more seeds would be needed to tell). With n = 4 seeds, t_{0.975, 3} = 3.182, so only a
difference of about 1.6 run-to-run standard deviations is called either way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from lengthrl.errors import DataError

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (standard tables); df > 30 uses the entry of
# the largest tabulated df not above it, and 1.960 beyond 120. A fractional Welch df is rounded down, which makes
# the interval wider (conservative), never narrower.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

STATUSES = ("reproduced", "not_reproduced", "inconclusive")


def t975(df: float) -> float:
    """The two-sided 95% Student-t quantile for `df` degrees of freedom (rounded down to a tabulated df)."""
    if not df >= 1:
        raise DataError(f"a t-interval needs at least 1 degree of freedom (2 seeds), got df={df}")
    if df > 120:
        return 1.960
    return _T975[max(k for k in _T975 if k <= math.floor(df))]


def _mean_sd(x: Sequence[float]) -> tuple[float, float]:
    n = len(x)
    m = sum(x) / n
    return m, math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1))


def _check(name: str, x: Sequence[float]) -> list[float]:
    x = [float(v) for v in x]
    if len(x) < 2:
        raise DataError(f"{name}: an interval over seeds needs >= 2 seeds, got {len(x)}; train more seeds "
                        "(e.g. `lengthrl demo --seeds 0,1,2,3`)")
    if not all(math.isfinite(v) for v in x):
        raise DataError(f"{name}: non-finite per-seed values {x}")
    return x


def t_interval(x: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lo, hi): the 95% t-interval of the mean of the per-seed values `x` (n >= 2)."""
    x = _check("t_interval", x)
    m, sd = _mean_sd(x)
    h = t975(len(x) - 1) * sd / math.sqrt(len(x))
    return m, m - h, m + h


def welch_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """(d, lo, hi): the 95% Welch interval of mean(b) - mean(a) for two sets of independent runs."""
    a, b = _check("welch_interval(a)", a), _check("welch_interval(b)", b)
    (ma, sa), (mb, sb) = _mean_sd(a), _mean_sd(b)
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    se = math.sqrt(va + vb)
    d = mb - ma
    if se == 0:
        return d, d, d
    ra, rb = va / (va + vb), vb / (va + vb)  # Welch-Satterthwaite df, scaled so tiny variances cannot underflow
    df = 1.0 / (ra ** 2 / (len(a) - 1) + rb ** 2 / (len(b) - 1))
    h = t975(df) * se
    return d, d - h, d + h


def status(lo: float, hi: float, threshold: float, direction: str = "above") -> str:
    """`reproduced` when [lo, hi] lies wholly on the paper's side of `threshold` ("above" or "below"),
    `not_reproduced` when wholly on the other side, `inconclusive` when it contains the threshold."""
    if direction not in ("above", "below"):
        raise DataError(f"status: direction must be 'above' or 'below', got {direction!r}")
    if direction == "below":
        lo, hi, threshold = -hi, -lo, -threshold
    if lo > threshold:
        return "reproduced"
    if hi < threshold:
        return "not_reproduced"
    return "inconclusive"


@dataclass
class Verdict:
    """One claim of a paper, judged on one value per training seed."""

    claim: str  # what the paper says, in words
    paper: str  # name and arXiv id
    status: str  # reproduced | not_reproduced | inconclusive
    n_seeds: int  # training seeds per recipe (the smaller one for a comparison)
    estimate: float  # the mean (or difference of means) over seeds
    ci: list[float]  # [lo, hi], 95% over seeds
    per_seed: list | dict  # the per-seed values (a dict of recipe -> values for a comparison)
    threshold: float  # the paper's side begins here
    direction: str  # "above": the claim holds for values above the threshold; "below": below
    measure: str = ""  # what the per-seed value is
    seeds: list[int] = field(default_factory=list)

    def text(self) -> str:
        word = self.status.replace("_", " ")
        return (f"{self.claim} ({self.paper}): {word}. {self.measure}: {self.estimate:+.3f}, 95% interval over "
                f"{self.n_seeds} training seeds [{self.ci[0]:+.3f}, {self.ci[1]:+.3f}] against the threshold "
                f"{self.threshold:+.3f} ({self.direction}); per seed {_fmt(self.per_seed)}.")

    def to_json(self) -> dict:
        return asdict(self)


def _fmt(v) -> str:
    if isinstance(v, dict):
        return "; ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return "[" + ", ".join(f"{x:.3f}" for x in v) + "]"


def judge_one(claim: str, paper: str, measure: str, values: Sequence[float], threshold: float,
              direction: str = "above", seeds: Sequence[int] = ()) -> Verdict:
    """A claim about one recipe's per-seed values (e.g. DLER's length cut against the SFT model)."""
    m, lo, hi = t_interval(values)
    return Verdict(claim, paper, status(lo, hi, threshold, direction), len(values), m, [lo, hi],
                   [float(v) for v in values], threshold, direction, measure, list(seeds))


def judge_diff(claim: str, paper: str, measure: str, a_name: str, a: Sequence[float], b_name: str,
               b: Sequence[float], threshold: float = 0.0, direction: str = "above",
               seeds: Sequence[int] = ()) -> Verdict:
    """A claim about mean(b) - mean(a) over two recipes' independent runs (e.g. LUSPO length - GSPO length)."""
    d, lo, hi = welch_interval(a, b)
    return Verdict(claim, paper, status(lo, hi, threshold, direction), min(len(a), len(b)), d, [lo, hi],
                   {a_name: [float(v) for v in a], b_name: [float(v) for v in b]}, threshold, direction,
                   measure, list(seeds))
