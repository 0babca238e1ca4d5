"""Advantage estimators: hand values, edge cases, invariants."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from lengthrl.advantages import ADVANTAGES, compute_advantages
from lengthrl.errors import ConfigError, UnknownNameError

R = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.2, 0.2, 0.2, 0.2, 3.0, 1.0, 2.0, 2.0])


def test_hand_values():
    # group 0: mean 0.5, sample std sqrt(1/3); group 1 all equal; group 2: mean 2, sample std sqrt(2/3)
    s0, s2 = math.sqrt(1 / 3), math.sqrt(2 / 3)
    exp = [0.5 / s0, -0.5 / s0, -0.5 / s0, 0.5 / s0, 0, 0, 0, 0, 1 / s2, -1 / s2, 0, 0]
    assert compute_advantages("grpo", R, 4, eps=0.0).tolist() == pytest.approx(exp, rel=1e-6)
    assert compute_advantages("dr_grpo", R, 4).tolist() == pytest.approx([.5, -.5, -.5, .5, 0, 0, 0, 0, 1, -1, 0, 0])
    # rloo: R_i - mean of the others; e.g. 3 - (1+2+2)/3
    assert compute_advantages("rloo", R, 4).tolist() == pytest.approx(
        [1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3, 0, 0, 0, 0, 3 - 5 / 3, 1 - 7 / 3, 2 - 2, 2 - 2], abs=1e-6)
    # batch: centred values c = [.5,-.5,-.5,.5,0,0,0,0,1,-1,0,0]; sample std over 12 = sqrt(3/11)
    c = [.5, -.5, -.5, .5, 0, 0, 0, 0, 1, -1, 0, 0]
    sd = math.sqrt(sum(x * x for x in c) / 11)
    assert compute_advantages("batch", R, 4, eps=0.0).tolist() == pytest.approx([x / sd for x in c], rel=1e-6)


# the group-relative estimators; hbpo (budget sub-groups, arXiv 2507.15844) adds an absolute intra-budget term
# and needs the budgets: tested in test_hbpo_advantage_is_the_sum_of_its_terms
RELATIVE = [n for n, s in ADVANTAGES.items() if not s.per_response]


@pytest.mark.parametrize("name", RELATIVE)
def test_all_equal_groups_and_groups_of_one_are_exactly_zero(name):
    r = torch.tensor([0.1, 0.1, 0.1, 7.0, 7.0, 7.0])
    assert (compute_advantages(name, r, 3) == 0).all()
    assert (compute_advantages(name, torch.tensor([0.3, 5.0, -1.0]), 1) == 0).all()


def test_errors():
    with pytest.raises(UnknownNameError, match="grpo, dr_grpo, batch, rloo"):
        compute_advantages("gae", R, 4)
    with pytest.raises(ConfigError, match="group_size=5"):
        compute_advantages("grpo", R, 5)
    with pytest.raises(ConfigError, match=r"index \[2\]"):
        compute_advantages("grpo", torch.tensor([1.0, 0.0, float("nan"), 1.0]), 2)
    with pytest.raises(ConfigError, match="eps"):
        compute_advantages("dr_grpo", R, 4, eps=1e-4)
    with pytest.raises(ConfigError, match=r"\[N\]"):
        compute_advantages("grpo", R.view(3, 4), 4)


rewards = st.lists(st.sampled_from([0.0, 0.5, 1.0, -1.0, 0.3]), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(groups=st.lists(rewards, min_size=1, max_size=4).filter(lambda g: len({len(x) for x in g}) == 1),
       name=st.sampled_from(RELATIVE), shift=st.floats(-10, 10))
def test_zero_sum_shift_invariance_finite(groups, name, shift):
    G = len(groups[0])
    r = torch.tensor([x for g in groups for x in g], dtype=torch.float64)
    a = compute_advantages(name, r, G)
    assert torch.isfinite(a).all()
    assert torch.allclose(a.view(-1, G).sum(-1), torch.zeros(len(groups), dtype=torch.float64), atol=1e-9)
    assert torch.allclose(compute_advantages(name, r + shift, G), a, atol=1e-6)
    # a better reward in the same group never gets a lower advantage
    for gi in range(len(groups)):
        rr, aa = r.view(-1, G)[gi], a.view(-1, G)[gi]
        order = torch.argsort(rr)
        assert (aa[order].diff() >= -1e-9).all()


def test_hbpo_advantage_is_the_sum_of_its_terms():
    """By hand: one group of 4, budgets (8, 8, 32, 32), L_max 64, beta 4, eps 0: A = sub-group mean - f2(b) +
    (R - mean) / population std."""
    R = torch.tensor([4.0, 2.0, 0.0, 2.0], dtype=torch.float64)
    b = torch.tensor([8.0, 8.0, 32.0, 32.0], dtype=torch.float64)
    f2 = [4 * math.cos(math.pi * x / 128) for x in (8, 8, 32, 32)]
    sub = [3.0, 3.0, 1.0, 1.0]
    sd = math.sqrt(sum((x - 2.0) ** 2 for x in R.tolist()) / 4)
    want = [sub[i] - f2[i] + (R[i].item() - 2.0) / sd for i in range(4)]
    got = compute_advantages("hbpo", R, 4, budget=b, max_len=64.0, beta=4.0, eps=0.0)
    assert got.tolist() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ConfigError, match=r"compute_advantages\('hbpo'\) needs budget=\[N\]"):
        compute_advantages("hbpo", R, 4)
    with pytest.raises(ConfigError, match="budget must be"):
        compute_advantages("hbpo", R, 4, budget=b[:3])
