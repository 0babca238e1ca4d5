"""Length rewards against values computed by hand from each paper's formula."""

import math

import pytest
import torch

from lengthrl.rewards import (
    dynamic_sampling_filter,
    hbpo_advantages,
    hbpo_budgets,
    length_reward,
    overlong_filter_mask,
)

L4 = [10, 20, 30, 40]
C4 = [1, 1, 0, 1]


def close(got, want, tol=1e-5):
    got = got.tolist() if isinstance(got, torch.Tensor) else got
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=tol), (got, want)


def test_dapo_overlong_hand_values():
    # L_max = 64, L_cache = 16 -> soft region (48, 64]; (48 - L)/16 inside, -1 beyond.
    r = length_reward("dapo_overlong", [10, 48, 50, 60, 64, 70], [1, 0, 1, 1, 0, 1], 6, max_len=64, cache_len=16)
    close(r, [0.0, 0.0, -0.125, -0.75, -1.0, -1.0])
    assert r.dtype == torch.float32 and r.shape == (6,)


def test_dler_truncation_only():
    close(length_reward("dler", [10, 30, 31, 5], [1, 1, 1, 0], 2, max_len=30), [1.0, 1.0, 0.0, 0.0])
    # generation capped at 30: the cut-off response (L == 30, truncated) gets 0 too
    close(length_reward("dler", [10, 30], [1, 1], 2, max_len=30, truncated=[False, True]), [1.0, 0.0])


def test_kimi_hand_values():
    # lam = 0.5 - (L - 10)/30 = 0.5, 1/6, -1/6, -0.5; the wrong one (L=30) keeps min(0, -1/6)
    close(length_reward("kimi", L4, C4, 4), [0.5, 1 / 6, -1 / 6, -0.5])
    # a short wrong answer is not rewarded: min(0, 0.5) = 0
    close(length_reward("kimi", [10, 40], [0, 1], 2), [0.0, -0.5])
    # all lengths equal -> 0 for everyone
    close(length_reward("kimi", [7, 7, 7], [1, 0, 1], 3), [0.0, 0.0, 0.0])


def test_arora_zanette_hand_values():
    # correct lengths 10, 20, 40: mean 70/3, population std sqrt(((40/3)^2 + (10/3)^2 + (50/3)^2)/3)
    mean = 70 / 3
    std = math.sqrt(((10 - mean) ** 2 + (20 - mean) ** 2 + (40 - mean) ** 2) / 3)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    want = [1 - 0.1 * sig((10 - mean) / std), 1 - 0.1 * sig((20 - mean) / std), 0.0, 1 - 0.1 * sig((40 - mean) / std)]
    close(length_reward("arora_zanette", L4, C4, 4), want)
    assert want[0] == pytest.approx(0.974442, abs=1e-5)  # the number itself, worked out once by hand
    # one correct answer: z = 0 -> 1 - alpha/2
    close(length_reward("arora_zanette", [5, 9], [0, 1], 2, alpha=0.4), [0.0, 0.8])


def test_shorter_better_hand_values():
    # SOL = 10 (shortest correct): 2c - 0.001 |L - 10|
    close(length_reward("shorter_better", L4, C4, 4), [2.0, 1.99, -0.02, 1.97])
    # no correct answer: SOL = mean length = 20
    close(length_reward("shorter_better", [10, 30], [0, 0], 2), [-0.01, -0.01])


def test_grpo_lambda_switches_penalty_on_top_groups_only():
    L = L4 + L4
    c = C4 + [1, 0, 0, 0]  # rates 0.75 and 0.25
    r = length_reward("grpo_lambda", L, c, 4, lam=0.5, alpha=0.2)
    az = length_reward("arora_zanette", L4, C4, 4, alpha=0.2)
    close(r[:4], az.tolist())  # top group: penalised
    close(r[4:], [1.0, 0.0, 0.0, 0.0])  # other group: plain 0/1
    # ties broken by group order: both groups at rate 0.75, lam = 0.5 -> only the first is penalised
    r2 = length_reward("grpo_lambda", L4 + L4, C4 + C4, 4, lam=0.5, alpha=0.2)
    close(r2[:4], az.tolist())
    close(r2[4:], [1.0, 1.0, 0.0, 1.0])


def test_hapo_hand_values():
    # h = 25: r = cos(pi/2 * L/25) -> cos(0.2pi)=0.809017, cos(0.4pi)=0.309017, cos(0.6pi)=-0.309017, cos(0.8pi)=-0.809017
    r = length_reward("hapo", L4, C4, 4, history=25)
    close(r, [1.809017, 1.309017, -0.309017, 1 - 0.7])
    # L >= 2h -> -1 (wrong), floored at -0.7 if correct; no history (h = 0) -> plain c
    close(length_reward("hapo", [50, 50, 9, 9], [0, 1, 1, 0], 2, history=[25, 25, 0, 0]), [-1.0, 0.3, 1.0, 0.0])


def test_hbpo_hand_values():
    # b = 25, L_max = 50, beta = 4, alpha = 1/50
    r = length_reward("hbpo", [10, 25, 40, 60, 10], [1, 1, 1, 1, 0], 5, target=25, max_len=50)
    f2 = 4 * math.cos(math.pi * 25 / 100)  # 2.828427
    f1_40 = 4 * math.cos(math.pi * 40 / 100) - 15 / 50  # 0.936068
    close(r, [f2, f2, f1_40, 0.0, 0.0])
    assert f1_40 == pytest.approx(0.936068, abs=1e-6)


def test_hbpo_budgets_and_advantages():
    close(hbpo_budgets(8, 4, (1, 2)), [1, 1, 2, 2, 1, 1, 2, 2])
    # max_len 300: f2(100) = 4 cos(pi/6) = 3.464102, f2(200) = 4 cos(pi/3) = 2
    a = hbpo_advantages([1.0, 3.0, 2.0, 2.0], [100, 100, 200, 200], 4, max_len=300, beta=4.0, eps=0.0)
    s = math.sqrt(0.5)  # population std of (1, 3, 2, 2)
    close(a, [2 - 3.464102 - 1 / s, 2 - 3.464102 + 1 / s, 0.0, 0.0])


def test_l1_exact_and_max_hand_values():
    close(length_reward("l1_exact", L4, C4, 4, target=25), [0.9955, 0.9985, -0.0015, 0.9955])
    close(length_reward("l1_max", L4, C4, 4, target=25), [0.515, 0.505, 0.0, 0.485])
    # clip at 1 (far under budget) and at 0 (far over); per-sample target
    close(length_reward("l1_max", [0, 2000], [1, 1], 2, target=torch.tensor([1000, 100])), [1.0, 0.0])


def test_ruler_buckets():
    # flexible: target 80 -> bucket (60, 100]; target 30 -> (20, 40]
    close(length_reward("ruler", [60, 61, 100, 101], [0, 1, 1, 1], 4, target=80), [0.0, 1.0, 1.0, 0.0])
    close(length_reward("ruler", [20, 21, 40, 41], [1, 1, 1, 1], 4, target=30), [0.0, 1.0, 1.0, 0.0])
    # precise: target 80 -> (70, 90]; > 800 -> (800, inf)
    close(length_reward("ruler", [70, 71, 90, 95], [1, 1, 1, 1], 4, target=80, match="precise"), [0.0, 1.0, 1.0, 0.0])
    close(length_reward("ruler", [800, 5000], [1, 1], 2, target=900, match="precise"), [0.0, 1.0])
    # custom edges, per-sample target
    close(length_reward("ruler", [5, 5], [1, 1], 2, target=[3, 50], edges=[10]), [1.0, 0.0])


def test_longwriter_range():
    close(length_reward("longwriter", L4, C4, 4, lo=15, hi=25, max_len=50), [10 / 15, 1.0, 0.8, 0.4])


def test_cosine_hand_values():
    # L_max = 40: correct 1 + 0.5(1 + cos(pi L/40)), wrong -5(1 + cos(pi L/40)); L >= 40 -> -10
    r = length_reward("cosine", [0, 10, 20, 30, 40, 0], [1, 1, 1, 0, 1, 0], 6, max_len=40)
    close(r, [2.0, 1.853553, 1.5, -1.464466, -10.0, -10.0])


def test_surrogate_peak():
    # L_max = 40, p = 0.5: g(0.25) = 1 - 0.5^2 = 0.75, g(0.5) = 1, g(0.75) = 1 - 2 * 0.5^2 = 0.5, g(1) = -1
    r = length_reward("surrogate", [10, 20, 30, 40, 50, 20, 40], [1, 1, 1, 1, 1, 0, 0], 7, max_len=40)
    close(r, [1.75, 2.0, 1.5, 0.0, 0.0, 0.0, -1.0])


def test_drpo_weights_hand_values():
    # r = 1 - L/50 = 0.8, 0.6, 0.2 over the correct set; softmax(r/0.1) = softmax(8, 6, 2)
    e = [math.exp(8), math.exp(6), math.exp(2)]
    s = sum(e)
    close(length_reward("drpo", L4, C4, 4, max_len=50), [e[0] / s, e[1] / s, -1.0, e[2] / s])
    assert e[0] / s == pytest.approx(0.878878, abs=1e-6)
    # groups of 2: mixed groups -> (+1, -1); all-correct and all-wrong groups -> 0
    close(length_reward("drpo", [10, 10, 20, 20, 5, 9, 5, 9], [1, 0, 0, 1, 1, 1, 0, 0], 2, max_len=50),
          [1.0, -1.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    # two wrong answers share -1
    close(length_reward("drpo", [10, 10, 20, 20], [1, 0, 0, 1], 4, max_len=50, lam=1.0),
          [math.exp(0.8) / (math.exp(0.8) + math.exp(0.6)), -0.5, -0.5, math.exp(0.6) / (math.exp(0.8) + math.exp(0.6))])


def test_dynamic_sampling_filter():
    keep, frac = dynamic_sampling_filter([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0], 4)
    assert keep.tolist() == [False] * 4 + [True] * 4 + [False] * 4
    assert frac == pytest.approx(1 / 3)
    keep, frac = dynamic_sampling_filter([0.5, 0.5001], 2, atol=0.001)
    assert keep.tolist() == [False, False] and frac == 0.0


def test_overlong_filter_mask():
    close(overlong_filter_mask([5, 10, 12], 10), [1.0, 0.0, 0.0])
    close(overlong_filter_mask([5, 10, 12], 10, truncated=[False, False, True]), [1.0, 1.0, 0.0])
