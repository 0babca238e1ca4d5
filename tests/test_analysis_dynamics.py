"""Length dynamics from samples / metrics rows, against hand values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.analysis.dynamics import (entropy_trend, gradient_share, group_length_spread,
                                        length_advantage_corr, length_dynamics)
from lengthrl.errors import DataError


def rows(step, pid, lengths, advs):
    return [{"step": step, "prompt_id": pid, "length": L, "advantage": a, "correct": a > 0}
            for L, a in zip(lengths, advs)]


S = rows(0, "a", [10, 30], [1, -1]) + rows(0, "b", [20, 20], [0, 0]) + rows(1, "a", [5, 15], [-1, 1])


def test_group_spread():
    g = group_length_spread(S)
    assert g[0] == {"step": 0, "n_groups": 2, "group_std_mean": 5.0, "group_range_mean": 10.0}
    assert g[1]["group_std_mean"] == 5.0 and g[1]["n_groups"] == 1


def test_len_adv_corr():
    c = length_advantage_corr(S)
    # step 0: L = [10,30,20,20], A = [1,-1,0,0] -> perfectly anti-correlated
    assert c[0]["corr"] == pytest.approx(-1.0)
    assert c[1]["corr"] == pytest.approx(1.0)
    assert length_advantage_corr(rows(0, "a", [3, 3], [1, -1]))[0]["corr"] is None


def test_gradient_share_grpo_vs_luspo():
    two = rows(0, "a", [10, 30], [1, -1])
    B = 2
    grpo = gradient_share(two, lambda L, A: A / (B * L))  # each response: |A|/B total -> 0.5 each
    luspo = gradient_share(two, lambda L, A: A / B)  # each response: |A| L / B -> 5 vs 15
    assert grpo[0]["share_long"] == pytest.approx(0.5) and grpo[0]["frac_long"] == 0.5
    assert luspo[0]["share_long"] == pytest.approx(0.75)
    assert luspo[0]["net_long"] == pytest.approx(-15.0) and luspo[0]["net_short"] == pytest.approx(5.0)
    assert gradient_share(rows(0, "a", [1, 2], [0, 0]), lambda L, A: A)[0]["share_long"] is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 500), st.floats(-3, 3)), min_size=2, max_size=30))
def test_gradient_share_is_a_fraction(pairs):
    L, A = zip(*pairs)
    out = gradient_share(rows(0, "p", L, A), lambda L, A: A / L)[0]
    assert out["share_long"] is None or 0.0 <= out["share_long"] <= 1.0 + 1e-12


def test_entropy_trend_and_bad_rows():
    m = [{"step": i, "entropy": 2.0 - 0.1 * i} for i in range(10)]
    t = entropy_trend(m, window=2)
    assert t["slope"] == pytest.approx(-0.1) and t["first"] == pytest.approx(1.95) and t["last"] == pytest.approx(1.15)
    assert t["rel_change"] == pytest.approx((1.15 - 1.95) / 1.95)
    assert entropy_trend([{"step": 0}])["slope"] is None
    with pytest.raises(DataError, match="'length'"):
        group_length_spread([{"step": 0, "prompt_id": "a"}])
    with pytest.raises(DataError, match="'advantage' is NaN"):
        length_advantage_corr([{"step": 0, "length": 3, "advantage": float("nan")}])
    d = length_dynamics(m, S, token_weight=lambda L, A: A / L)
    assert set(d) == {"entropy", "group_spread", "len_adv_corr", "gradient_share"}
    assert np.isclose(d["gradient_share"][0]["share_long"], 0.5)
