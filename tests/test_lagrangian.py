"""The Lagrangian length controller: hand-computed dual steps, synthetic length streams (the multiplier rises
over budget and returns to 0 under it), PI damping, per-prompt budgets, config validation, and the trainer
hooks (metrics, checkpoint, resume)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.control import LagrangeConfig, LagrangeController, shape_scored, step_budgets
from lengthrl.errors import ConfigError, DataError
from lengthrl.tasks.base import Sample
from lengthrl.train.validate import build_config


def test_one_dual_step_by_hand():
    ctl = LagrangeController(LagrangeConfig(budget=10, lr=0.5))
    m = ctl.update(torch.tensor([12, 14, 16, 18]))  # mean 15 -> g = 15/10 - 1 = 0.5
    assert m["lagrange/violation"] == pytest.approx(0.5)
    assert ctl.lam == pytest.approx(0.25)  # 0 + 0.5 * 0.5
    ctl.update(torch.tensor([5, 5]))  # g = -0.5 -> 0.25 - 0.25 = 0
    assert ctl.lam == pytest.approx(0.0)
    ctl.update(torch.tensor([5, 5]))  # projected at 0
    assert ctl.lam == 0.0


def test_shaping_by_hand():
    ctl = LagrangeController(LagrangeConfig(budget=10, init=2.0))
    shaped, term = ctl.shape(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([10, 15, 5]))
    # r - 2 * (L - 10)/10: 1 - 0 ; 0 - 1 ; 1 + 1
    assert torch.allclose(shaped, torch.tensor([1.0, -1.0, 2.0]))
    assert torch.allclose(term, torch.tensor([0.0, -1.0, 1.0]))


def test_quantile_violation_by_hand():
    ctl = LagrangeController(LagrangeConfig(budget=10, quantile=0.5))
    # ratios - 1: [-0.5, 0, 1.0]; median 0
    assert ctl.violation(torch.tensor([5, 10, 20])) == pytest.approx(0.0)
    ctl9 = LagrangeController(LagrangeConfig(budget=10, quantile=0.9))
    # torch.quantile linear interpolation at 0.9 of [-0.5, 0, 1]: 0 + 0.8 * 1 = 0.8
    assert ctl9.violation(torch.tensor([5, 10, 20])) == pytest.approx(0.8)


def _stream(ctl, means, seed=0, spread=4):
    g = torch.Generator().manual_seed(seed)
    lams = []
    for mu in means:
        L = (mu + torch.randint(-spread, spread + 1, (32,), generator=g)).clamp(min=1)
        ctl.update(L)
        lams.append(ctl.lam)
    return lams


def test_multiplier_rises_over_budget_then_falls_back_to_zero():
    ctl = LagrangeController(LagrangeConfig(budget=32, lr=0.1))
    lams = _stream(ctl, [48] * 20 + [16] * 40)
    assert all(b > a for a, b in zip(lams[:19], lams[1:20]))  # strictly rising while over budget
    assert lams[19] == pytest.approx(0.1 * 20 * 0.5, rel=0.1)  # ~ lr * steps * violation (0.5)
    assert all(b <= a for a, b in zip(lams[20:], lams[21:]))  # non-increasing once under budget
    assert lams[-1] == 0.0


def test_under_budget_from_the_start_stays_zero():
    ctl = LagrangeController(LagrangeConfig(budget=64, lr=1.0, pi=0.5))
    assert set(_stream(ctl, [20] * 10)) == {0.0}


def test_pi_damping_oscillates_less_on_a_closed_loop():
    """A toy closed loop in which the policy integrates the pressure, as RL does: each step the mean length
    drifts up by 1 token and the penalty pulls it down by 10 * lambda (L_{t+1} = L_t + 1 - 10 lambda_t).
    Pure dual ascent is a double integrator on it and oscillates around the budget; the proportional term
    damps it (Stooke et al. arXiv 2007.03964)."""

    def run(pi):
        ctl = LagrangeController(LagrangeConfig(budget=32, lr=0.1, pi=pi))
        L, lens = 48.0, []
        for _ in range(100):
            lens.append(L)
            ctl.update(torch.full((8,), L))
            L = max(1.0, L + 1.0 - 10 * ctl.lam)
        return lens

    plain, damped = run(0.0), run(1.0)
    undershoot = lambda lens: 32 - min(lens)  # noqa: E731
    swing = lambda lens: max(lens[50:]) - min(lens[50:])  # noqa: E731
    assert undershoot(plain) > 10 and swing(plain) > 5  # the plain multiplier oscillates
    assert undershoot(damped) < 2 and swing(damped) < 0.5  # PI settles
    assert abs(damped[-1] - 32) < 0.5


def test_lambda_max_bounds_the_multiplier():
    ctl = LagrangeController(LagrangeConfig(budget=10, lr=1.0, max=0.7))
    _stream(ctl, [100] * 5)
    assert ctl.lam == 0.7


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 200), min_size=1, max_size=16), min_size=1, max_size=20),
       st.floats(0.01, 2.0), st.floats(0.0, 2.0), st.integers(1, 128))
def test_multiplier_is_never_negative_and_matches_projected_ascent(batches, lr, pi, budget):
    ctl = LagrangeController(LagrangeConfig(budget=budget, lr=lr, pi=pi))
    plain = LagrangeController(LagrangeConfig(budget=budget, lr=lr))
    lam = 0.0
    for b in batches:
        L = torch.tensor(b)
        g = float((L.double() / budget - 1).mean())
        lam = max(0.0, lam + lr * g)
        ctl.update(L)
        plain.update(L)
        assert ctl.lam >= 0 and math.isfinite(ctl.lam)
        assert plain.lam == pytest.approx(lam, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=2, max_size=12), st.floats(0.0, 5.0))
def test_shaping_preserves_order_within_a_group_of_equal_rewards(lengths, lam):
    """With equal task rewards and one budget, shorter never gets a lower shaped reward."""
    ctl = LagrangeController(LagrangeConfig(budget=40, init=lam))
    shaped, _ = ctl.shape(torch.ones(len(lengths)), torch.tensor(lengths))
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    vals = shaped[order]
    assert all(vals[i] >= vals[i + 1] - 1e-6 for i in range(len(vals) - 1))


def test_per_prompt_budgets_shaping_and_dual_step():
    from lengthrl.train.scoring import Scored

    ctl = LagrangeController(LagrangeConfig(budget=20, per_prompt=True, lr=1.0, init=1.0))
    samples = [Sample("a", "p", "1", target_len=10), Sample("b", "p", "2", target_len=None)]
    scored = Scored(rewards=torch.tensor([1.0, 1.0, 0.0, 0.0]), terms={}, correct=torch.ones(4, dtype=torch.bool),
                    format_ok=torch.ones(4, dtype=torch.bool), verifier_errors=0)
    lengths = torch.tensor([10, 20, 20, 30])
    budgets = step_budgets(ctl, samples, group_size=2)
    assert budgets.tolist() == [10.0, 10.0, 20.0, 20.0]
    shaped = shape_scored(ctl, scored, lengths, budgets)
    m = ctl.dual_step(lengths, budgets)
    # term -1 * (L - B)/B = [0, -1, 0, -0.5]
    assert torch.allclose(shaped.terms["lagrange"], torch.tensor([0.0, -1.0, 0.0, -0.5]))
    assert torch.allclose(shaped.rewards, torch.tensor([1.0, 0.0, 0.0, -0.5]))
    assert scored.rewards.tolist() == [1.0, 1.0, 0.0, 0.0] and scored.terms == {}  # the input is left as it was
    # violation mean([0, 1, 0, 0.5]) = 0.375; integral 1 + 0.375 -> lambda 1.375
    assert m["lagrange/violation"] == pytest.approx(0.375) and m["lagrange/lambda"] == pytest.approx(1.375)
    assert m["lagrange/lambda_used"] == 1.0 and m["lagrange/budget_mean"] == pytest.approx(15.0)


def test_per_prompt_without_any_budget_names_the_fix():
    ctl = LagrangeController(LagrangeConfig(per_prompt=True))
    with pytest.raises(DataError, match="target_len"):
        ctl.budgets(2, [5, None])


@pytest.mark.parametrize("bad, match", [
    ([float("nan"), 3], "lengths\\[0\\]"), ([3, -1], "lengths\\[1\\]"), ([], "empty"),
])
def test_bad_lengths_are_named(bad, match):
    ctl = LagrangeController(LagrangeConfig(budget=10))
    with pytest.raises(DataError, match=match):
        ctl.update(torch.tensor(bad, dtype=torch.float32))


def test_nan_reward_is_named():
    ctl = LagrangeController(LagrangeConfig(budget=10))
    with pytest.raises(DataError, match="rewards\\[1\\]"):
        ctl.shape(torch.tensor([0.0, float("nan")]), torch.tensor([1, 2]))


def test_state_round_trip():
    a = LagrangeController(LagrangeConfig(budget=16, lr=0.3, pi=0.2))
    _stream(a, [30] * 7)
    b = LagrangeController(LagrangeConfig(budget=16, lr=0.3, pi=0.2))
    b.load_state_dict(a.state_dict())
    assert (b.lam, b.integral, b.steps) == (a.lam, a.integral, a.steps)
    for x in (a, b):
        x.update(torch.tensor([10, 12]))
    assert a.lam == b.lam
    with pytest.raises(ConfigError, match="malformed"):
        b.load_state_dict({"lambda": 1.0})


# ---- config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, key", [
    ({"length_budget": 0}, "length_budget"), ({"length_budget": -4.0}, "length_budget"),
    ({"length_budget": float("nan")}, "length_budget"),
    ({"length_budget": 32, "length_budget_quantile": 1.0}, "length_budget_quantile"),
    ({"length_budget_quantile": 0.9}, "length_budget_quantile"),
    ({"length_budget": 32, "lagrange_lr": 0.0}, "lagrange_lr"),
    ({"length_budget": 32, "lagrange_pi": -1.0}, "lagrange_pi"),
    ({"length_budget": 32, "lagrange_init": -0.1}, "lagrange_init"),
    ({"length_budget": 32, "lagrange_max": 0.0}, "lagrange_max"),
    ({"length_budget": "many"}, "length_budget"),
])
def test_config_errors_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        build_config(extra=kw)


def test_config_accepts_valid_controller_keys():
    cfg = build_config(overrides=["length_budget=32", "length_budget_quantile=0.9", "lagrange_pi=0.5"])
    assert cfg.length_budget == 32.0 and cfg.length_budget_quantile == 0.9 and cfg.lagrange_pi == 0.5
    assert build_config(extra={"length_budget_per_prompt": True}).length_budget is None
