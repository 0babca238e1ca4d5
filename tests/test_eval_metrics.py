"""pass@k, AES and the length / accuracy summary against hand-computed values."""

from fractions import Fraction
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.metrics import aes, length_stats, pass_at_k, summarize


def brute_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Fraction of the k-subsets of n samples (c correct) that hold at least one correct sample."""
    items = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    hit = sum(1 for s in subsets if any(items[i] for i in s))
    return Fraction(hit, len(subsets))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_enumeration(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(float(brute_pass_at_k(n, c, k)), abs=1e-12)


def test_pass_at_k_hand_values_and_vectorised():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5 ; n=5, c=2, k=3: 1 - C(3,3)/C(5,3) = 0.9
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k
    out = pass_at_k(np.array([4, 5, 5]), np.array([1, 2, 0]), 2)
    # 1 - C(3,2)/C(4,2) = .5 ; 1 - C(3,2)/C(5,2) = .7 ; 0
    assert np.allclose(out, [0.5, 0.7, 0.0])
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_at_k_large_n_is_stable():
    # n = 100000, c = 1, k = 1000: exact value k/n = 0.01 (1 - C(n-1,k)/C(n,k) = k/n).
    assert pass_at_k(100_000, 1, 1000) == pytest.approx(0.01, rel=1e-9)
    v = pass_at_k(2000, 5, 1024)
    assert 0.0 < v <= 1.0 and np.isfinite(v)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n - 1))))
def test_pass_at_k_monotone_in_k(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k + 1) >= pass_at_k(n, c, k) - 1e-12


def test_pass_at_k_bad_input():
    with pytest.raises(ConfigError, match="k=5 exceeds"):
        pass_at_k(4, 1, 5)
    with pytest.raises(DataError, match="'c'"):
        pass_at_k(4, 5, 1)
    with pytest.raises(DataError, match="'n'"):
        pass_at_k(np.array([4.0, np.nan]), np.array([1, 1]), 1)
    with pytest.raises(ConfigError, match="k must be"):
        pass_at_k(4, 1, 0)


def test_aes_worked_example():
    # base: acc 0.50 at 1000 tokens.
    # shorter & slightly worse: dL = 0.4, dA = -0.1 -> 1*0.4 - 5*0.1 = -0.1
    assert aes(0.45, 600, 0.5, 1000) == pytest.approx(-0.1)
    # shorter & better: dL = 0.2, dA = +0.1 -> 0.2 + 3*0.1 = 0.5
    assert aes(0.55, 800, 0.5, 1000) == pytest.approx(0.5)
    # longer, same accuracy: dL = -0.5 -> -0.5
    assert aes(0.5, 1500, 0.5, 1000) == pytest.approx(-0.5)
    # custom weights
    assert aes(0.45, 600, 0.5, 1000, alpha=2, beta=1, gamma=1) == pytest.approx(0.7)
    with pytest.raises(DataError, match="base_acc"):
        aes(0.5, 10, 0.0, 10)
    with pytest.raises(DataError, match="'length'"):
        aes(0.5, float("nan"), 0.5, 10)


def _rec(pid, i, length, correct, truncated=False):
    return {"prompt_id": pid, "sample_idx": i, "length": length, "correct": correct, "truncated": truncated,
            "response": "x"}


def test_summary_hand_values():
    recs = [_rec("a", 0, 10, True), _rec("a", 1, 20, False), _rec("b", 0, 30, True), _rec("b", 1, 40, False, True)]
    s = summarize(recs, ks=(1, 2, 4))
    assert s["acc"] == 0.5 and s["pass@1"] == 0.5 and s["pass@2"] == 1.0
    assert "pass@4" not in s and "pass@4_skipped" in s
    assert s["len/mean"] == 25 and s["len/median"] == 25 and s["len/p90"] == pytest.approx(37.0)
    assert s["len/correct_mean"] == 20 and s["len/wrong_mean"] == 30
    assert s["trunc_rate"] == 0.25
    assert s["acc_per_1k_tokens"] == pytest.approx(20.0)  # 1000 * 0.5 / 25
    s2 = summarize(recs, baseline={"acc": 0.5, "len/mean": 50})
    assert s2["aes"] == pytest.approx(0.5)  # dL = 0.5, dA = 0


def test_length_stats_edge_cases():
    allright = [_rec("a", i, 5, True) for i in range(3)]
    s = length_stats(allright)
    assert s["len/wrong_mean"] is None and s["len/correct_mean"] == 5 and s["len/min"] == s["len/max"] == 5
    with pytest.raises(DataError, match="no records"):
        length_stats([])
    with pytest.raises(DataError, match="'length'"):
        summarize([_rec("a", 0, -3, True)])
    with pytest.raises(DataError, match="missing field"):
        summarize([{"prompt_id": "a", "correct": True}])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(4, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), min_size=1,
                max_size=10), st.integers(1, 4))
def test_pass_at_k_vectorised_equals_scalar(ncs, k):
    n, c = map(np.array, zip(*ncs))
    assert np.allclose(pass_at_k(n, c, k), [pass_at_k(int(a), int(b), k) for a, b in ncs], atol=1e-12)
