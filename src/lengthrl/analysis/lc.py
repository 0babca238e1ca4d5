"""Length-controlled comparison of two models on a verifiable task, in the spirit of LC-AlpacaEval
(Dubois et al., arXiv 2404.04475).

Every response of model A to a prompt is paired with every response of model B to the same prompt; the pair's
outcome is 1 if only A is correct, 0 if only B is, and a tie (both or neither correct) counts 1/2 (`ties="half"`,
as AlpacaEval counts ties) or is dropped (`ties="drop"`). The outcome is fitted by a logistic GLM

    logit P(A wins) = theta + phi * tanh(dlen / std(dlen)) [+ psi * d_x]

with dlen = len_A - len_B and, optionally, d_x the prompt's difficulty term (its pooled correctness rate over
both models, centred). The length-controlled win rate is the model's prediction at dlen = 0, averaged over
pairs: mean sigmoid(theta [+ psi d_x]); it is reported next to the raw win rate mean(outcome).
A verbose model that wins because its longer answers happen to be right more often keeps its raw win rate but
loses the length part of it under length control.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.records import EvalRecord, records_from_dicts


@dataclass
class LCFit:
    """The fitted GLM and the two win rates (of A over B)."""

    theta: float  # intercept: A's advantage at equal length
    phi: float  # length coefficient on tanh(dlen / std)
    psi: float | None  # prompt-difficulty coefficient (None when the term is not used)
    dlen_std: float  # std(dlen) used to scale the length term
    n_pairs: int
    raw_win_rate: float  # mean outcome
    lc_win_rate: float  # predicted at dlen = 0
    converged: bool
    iterations: int


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-6, max_iter: int = 100, tol: float = 1e-10
                 ) -> tuple[np.ndarray, bool, int]:
    """Logistic regression (targets y in [0, 1], so ties of 1/2 are allowed) by Newton / IRLS with a small L2
    penalty `l2` for separable data. X [N, p], y [N] -> (beta [p], converged, iterations)."""
    beta = np.zeros(X.shape[1])
    for it in range(1, max_iter + 1):
        mu = _sigmoid(X @ beta)  # [N]
        grad = X.T @ (y - mu) - l2 * beta  # [p]
        H = (X * (mu * (1 - mu))[:, None]).T @ X + l2 * np.eye(X.shape[1])  # [p, p]
        step = np.linalg.solve(H, grad)
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            return beta, True, it
    return beta, False, max_iter


def fit_lc_glm(dlen: np.ndarray, outcome: np.ndarray, prompt_term: np.ndarray | None = None,
               l2: float = 1e-6) -> LCFit:
    """Fit logit P(win) = theta + phi tanh(dlen/std(dlen)) [+ psi prompt_term] and return both win rates.

    dlen [N]: length of A's response minus B's; outcome [N] in [0, 1]; prompt_term [N] optional.
    When every dlen is equal the length term is dropped (phi = 0)."""
    dlen = np.asarray(dlen, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if dlen.shape != y.shape or dlen.ndim != 1:
        raise ConfigError(f"fit_lc_glm: dlen and outcome must be 1-D of equal length, got {dlen.shape}, {y.shape}")
    if y.size == 0:
        raise DataError("fit_lc_glm: no pairs to compare (no shared prompts, or only ties with ties='drop')")
    for name, arr in (("dlen", dlen), ("outcome", y)):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"fit_lc_glm: field {name!r} holds NaN/inf values")
    if np.any((y < 0) | (y > 1)):
        raise DataError("fit_lc_glm: field 'outcome' must lie in [0, 1]")
    std = float(np.std(dlen))
    cols = [np.ones_like(y)]
    if std > 0:
        cols.append(np.tanh(dlen / std))
    if prompt_term is not None:
        cols.append(np.asarray(prompt_term, dtype=np.float64))
    X = np.stack(cols, 1)  # [N, p]
    beta, ok, its = fit_logistic(X, y, l2=l2)
    theta = float(beta[0])
    phi = float(beta[1]) if std > 0 else 0.0
    psi = float(beta[-1]) if prompt_term is not None else None
    z0 = theta + (psi * X[:, -1] if psi is not None else 0.0)
    return LCFit(theta=theta, phi=phi, psi=psi, dlen_std=std, n_pairs=int(y.size), raw_win_rate=float(y.mean()),
                 lc_win_rate=float(np.mean(_sigmoid(np.broadcast_to(z0, y.shape)))), converged=ok, iterations=its)


_TIES = {"half": 0.5, "drop": None}


def pair_records(records_a: Sequence[EvalRecord | dict], records_b: Sequence[EvalRecord | dict],
                 ties: str = "half") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (A response, B response) pairs on shared prompts -> (dlen [N], outcome [N], prompt difficulty [N])."""
    if ties not in _TIES:
        raise ConfigError(f"ties={ties!r}: use one of {', '.join(_TIES)}")
    ga: dict[str, list[EvalRecord]] = defaultdict(list)
    gb: dict[str, list[EvalRecord]] = defaultdict(list)
    for r in records_from_dicts(list(records_a), "run A"):
        ga[r.prompt_id].append(r)
    for r in records_from_dicts(list(records_b), "run B"):
        gb[r.prompt_id].append(r)
    dl, out, diff = [], [], []
    pooled = {p: np.mean([r.correct for r in ga[p] + gb[p]]) for p in ga if p in gb}
    centre = float(np.mean(list(pooled.values()))) if pooled else 0.0
    for p, rate in pooled.items():
        for ra in ga[p]:
            for rb in gb[p]:
                if ra.correct != rb.correct:
                    y = 1.0 if ra.correct else 0.0
                elif _TIES[ties] is None:
                    continue
                else:
                    y = _TIES[ties]
                dl.append(ra.length - rb.length)
                out.append(y)
                diff.append(rate - centre)
    return np.array(dl, dtype=np.float64), np.array(out), np.array(diff)


def length_controlled_winrate(records_a: Sequence[EvalRecord | dict], records_b: Sequence[EvalRecord | dict],
                              ties: str = "half", prompt_term: bool = False) -> LCFit:
    """Length-controlled and raw win rate of A over B from two eval record sets on the same prompts."""
    dlen, y, diff = pair_records(records_a, records_b, ties)
    return fit_lc_glm(dlen, y, diff if prompt_term else None)
