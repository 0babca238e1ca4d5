"""Accuracy / length metrics computed from eval records.

- pass@k: the unbiased estimator of Chen et al. 2021 (Codex, arXiv 2107.03374):
  pass@k = E_prompts[1 - C(n - c, k) / C(n, k)], n samples per prompt of which c are correct.
- accuracy per 1k tokens: 1000 * acc / mean length = correct answers per 1000 generated tokens.
- AES, the accuracy-efficiency score of O1-Pruner (Luo et al., arXiv 2501.12570; also used by Ada-R1,
  arXiv 2504.21659), measured against a baseline (usually the model before length-aware training):
      dL = (L_base - L) / L_base,   dA = (A - A_base) / A_base
      AES = alpha * dL + beta * |dA|    if dA >= 0
      AES = alpha * dL - gamma * |dA|   if dA < 0
  defaults alpha = 1, beta = 3, gamma = 5: an accuracy drop costs more than an equal gain earns.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.records import EvalRecord, records_from_dicts


def pass_at_k(n, c, k: int):
    """Unbiased pass@k per prompt (Codex estimator, arXiv 2107.03374): 1 - C(n-c, k) / C(n, k).

    `n`, `c`: ints or equal-shape integer arrays [P] (samples and correct samples per prompt); `k` an int with
    1 <= k <= min(n). Returns a float for scalar input, else an array [P]. Computed as
    1 - exp(S(n) - S(n-c)) with S(m) = sum_{i=k+1}^{m} log1p(-k/i), i.e. the product form
    C(n-c,k)/C(n,k) = prod_{i=n-c+1}^{n} (1 - k/i); stable for any n (no large binomials), exact 1.0 when n-c < k.
    """
    scalar = np.ndim(n) == 0 and np.ndim(c) == 0
    n_arr = np.atleast_1d(np.asarray(n))
    c_arr = np.atleast_1d(np.asarray(c))
    if n_arr.shape != c_arr.shape:
        raise ConfigError(f"pass_at_k: n and c must have the same shape, got {n_arr.shape} and {c_arr.shape}")
    if n_arr.size == 0:
        return np.zeros(0)
    for name, arr in (("n", n_arr), ("c", c_arr)):
        if not np.all(np.isfinite(arr.astype(float))) or np.any(arr != np.round(arr)):
            raise DataError(f"pass_at_k: field {name!r} must hold whole numbers (NaN/fractions given)")
    n_arr, c_arr = n_arr.astype(np.int64), c_arr.astype(np.int64)
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"pass_at_k: k must be a positive integer, got {k!r}")
    k = int(k)
    if np.any(c_arr < 0) or np.any(c_arr > n_arr):
        raise DataError("pass_at_k: field 'c' (correct samples) must satisfy 0 <= c <= n for every prompt")
    if np.any(n_arr < k):
        raise ConfigError(
            f"pass_at_k: k={k} exceeds the samples per prompt (min n = {int(n_arr.min())}); "
            f"sample at least k responses per prompt (--samples) or lower k"
        )
    if k == 1:  # pass@1 = c / n exactly
        out = c_arr / n_arr
        return float(out[0]) if scalar else out
    # S[m] = sum_{i=k+1}^{m} log1p(-k/i) for m >= k (S[k] = 0); index by m.
    m_max = int(n_arr.max())
    i = np.arange(k + 1, m_max + 1, dtype=np.float64)
    S = np.concatenate([np.zeros(k + 1), np.cumsum(np.log1p(-k / i))])  # [m_max + 1]
    nc = n_arr - c_arr
    all_pass = nc < k
    ratio = np.exp(S[n_arr] - S[np.maximum(nc, k)])  # valid where nc >= k
    out = np.where(all_pass, 1.0, 1.0 - ratio)
    return float(out[0]) if scalar else out


def aes(acc: float, length: float, base_acc: float, base_length: float,
        alpha: float = 1.0, beta: float = 3.0, gamma: float = 5.0) -> float:
    """Accuracy-efficiency score (O1-Pruner, arXiv 2501.12570, eq. in sec. 4; defaults alpha=1, beta=3, gamma=5).

    dL = (base_length - length) / base_length; dA = (acc - base_acc) / base_acc;
    AES = alpha*dL + beta*dA if dA >= 0 else alpha*dL + gamma*dA (dA < 0).
    """
    for name, v in (("acc", acc), ("length", length), ("base_acc", base_acc), ("base_length", base_length)):
        if v is None or not math.isfinite(float(v)):
            raise DataError(f"aes: field {name!r} is {v!r}; it must be a finite number")
    if base_length <= 0:
        raise DataError(f"aes: field 'base_length' must be > 0 (mean baseline length), got {base_length}")
    if base_acc <= 0:
        raise DataError(f"aes: field 'base_acc' must be > 0 (the relative accuracy change is undefined), got {base_acc}")
    d_len = (base_length - length) / base_length
    d_acc = (acc - base_acc) / base_acc
    return float(alpha * d_len + (beta * d_acc if d_acc >= 0 else gamma * d_acc))


def _stats(lengths: np.ndarray, prefix: str) -> dict[str, float | None]:
    """mean / median / p90 of `lengths` [M] under `prefix`; None for an empty set."""
    if lengths.size == 0:
        return {f"{prefix}mean": None, f"{prefix}median": None, f"{prefix}p90": None}
    return {
        f"{prefix}mean": float(lengths.mean()),
        f"{prefix}median": float(np.median(lengths)),
        f"{prefix}p90": float(np.percentile(lengths, 90)),
    }


def length_stats(records: Sequence[EvalRecord | dict]) -> dict[str, float | None]:
    """Length mean/median/p90/min/max overall (`len/...`) and split by correct (`len/correct_...`) and wrong
    (`len/wrong_...`) responses. A split with no responses gives None."""
    recs = records_from_dicts(list(records))
    if not recs:
        raise DataError("length_stats: no records; evaluate at least one prompt")
    L = np.array([r.length for r in recs], dtype=np.float64)  # [M]
    ok = np.array([r.correct for r in recs], dtype=bool)  # [M]
    out = _stats(L, "len/")
    out["len/min"], out["len/max"] = float(L.min()), float(L.max())
    out.update(_stats(L[ok], "len/correct_"))
    out.update(_stats(L[~ok], "len/wrong_"))
    return out


def per_prompt_counts(records: Sequence[EvalRecord]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(prompt ids [P], samples per prompt n [P], correct per prompt c [P]) in first-seen order."""
    n: dict[str, int] = defaultdict(int)
    c: dict[str, int] = defaultdict(int)
    for r in records:
        n[r.prompt_id] += 1
        c[r.prompt_id] += int(r.correct)
    ids = list(n)
    return ids, np.array([n[i] for i in ids]), np.array([c[i] for i in ids])


def summarize(records: Sequence[EvalRecord | dict], ks: Sequence[int] = (1,),
              baseline: dict[str, Any] | None = None, aes_weights: tuple[float, float, float] = (1.0, 3.0, 5.0)
              ) -> dict[str, Any]:
    """All eval metrics of a set of records.

    Keys: n_prompts, n_records, acc (mean over all responses), pass@k for each k in `ks` (skipped with a
    `pass@k_skipped` note when a prompt has fewer than k samples), the `length_stats` keys, trunc_rate,
    acc_per_1k_tokens, and, when `baseline` (another summary, or a dict with acc and len/mean) is given,
    aes against it with `aes_weights` = (alpha, beta, gamma).
    """
    recs = records_from_dicts(list(records))
    if not recs:
        raise DataError("summarize: no records; evaluate at least one prompt")
    ids, n, c = per_prompt_counts(recs)
    out: dict[str, Any] = {"n_prompts": len(ids), "n_records": len(recs)}
    out["acc"] = float(np.mean([r.correct for r in recs]))
    for k in ks:
        if int(n.min()) >= k:
            out[f"pass@{k}"] = float(np.mean(pass_at_k(n, c, k)))
        else:
            out[f"pass@{k}_skipped"] = f"needs >= {k} samples per prompt, have {int(n.min())}"
    out.update(length_stats(recs))
    out["trunc_rate"] = float(np.mean([r.truncated for r in recs]))
    mean_len = out["len/mean"]
    out["acc_per_1k_tokens"] = None if mean_len == 0 else 1000.0 * out["acc"] / mean_len
    if baseline is not None:
        out["aes"] = aes(out["acc"], mean_len, baseline["acc"], baseline["len/mean"], *aes_weights)
    return out
