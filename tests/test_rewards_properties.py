"""Invariants of the length rewards, checked with hypothesis on random batches."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.errors import DataError
from lengthrl.rewards import HAPO, LENGTH_REWARDS, dynamic_sampling_filter, length_reward

MAXL = 200
SETTINGS = settings(max_examples=40, deadline=None)

# Hyperparameters that make every registered reward callable on lengths in [0, 2*MAXL].
HPARAMS = {
    "dapo_overlong": {"max_len": MAXL, "cache_len": 50},
    "dler": {"max_len": MAXL},
    "kimi": {},
    "arora_zanette": {},
    "shorter_better": {},
    "grpo_lambda": {},
    "hapo": {"history": 60},
    "hbpo": {"target": 50, "max_len": MAXL},
    "l1_exact": {"target": 80},
    "l1_max": {"target": 80},
    "ruler": {"target": 80},
    "longwriter": {"lo": 40, "hi": 120, "max_len": MAXL},
    "cosine": {"max_len": MAXL},
    "surrogate": {"max_len": MAXL},
    "drpo": {"max_len": MAXL},
}


@st.composite
def batches(draw, max_groups=4, max_g=6):
    g = draw(st.integers(1, max_g))
    p = draw(st.integers(1, max_groups))
    L = draw(st.lists(st.integers(0, 2 * MAXL), min_size=p * g, max_size=p * g))
    c = draw(st.lists(st.booleans(), min_size=p * g, max_size=p * g))
    return L, c, g


def test_hparam_table_covers_registry():
    assert set(HPARAMS) == set(LENGTH_REWARDS)


@SETTINGS
@given(batches())
def test_every_reward_finite_and_shape_preserving(b):
    L, c, g = b
    for name, hp in HPARAMS.items():
        r = length_reward(name, L, c, g, **hp)
        assert r.shape == (len(L),) and r.dtype == torch.float32, name
        assert torch.isfinite(r).all(), name


@SETTINGS
@given(st.integers(0, 2 * MAXL), st.integers(0, 2 * MAXL), st.booleans())
def test_per_sample_rewards_non_increasing_in_length(a, b, ok):
    lo, hi = min(a, b), max(a, b)
    for name in ("dapo_overlong", "dler", "l1_max", "hapo", "hbpo"):
        if name == "hbpo" and hi > MAXL:
            continue  # HBPO's equation gives 0 beyond L_max (the context) but f1 < 0 just below it; see below
        r = length_reward(name, [lo, hi], [ok, ok], 1, **HPARAMS[name])
        assert r[0] >= r[1] - 1e-6, (name, lo, hi, r.tolist())
    if ok:  # cosine: correct answers prefer short (wrong ones prefer long below the cap)
        r = length_reward("cosine", [lo, hi], [1, 1], 1, max_len=MAXL)
        assert r[0] >= r[1] - 1e-6


def test_hbpo_paper_equation_is_not_monotone_past_the_context():
    # As written in the paper, a correct answer just under L_max can score below 0 (f1 = beta cos(~pi/2) -
    # alpha |n - b|) while n > L_max scores 0. With generation capped at L_max, n > L_max never occurs.
    r = length_reward("hbpo", [199, 201], [1, 1], 1, target=50, max_len=MAXL)
    assert r[0] < 0 and r[1] == 0


@SETTINGS
@given(batches())
def test_group_rewards_non_increasing_among_correct(b):
    L, c, g = b
    for name in ("kimi", "arora_zanette", "shorter_better", "grpo_lambda", "drpo"):
        r = length_reward(name, L, c, g, **HPARAMS[name]).tolist()
        for k in range(0, len(L), g):
            idx = [i for i in range(k, k + g) if c[i]]
            for i in idx:
                for j in idx:
                    if L[i] < L[j]:
                        assert r[i] >= r[j] - 1e-6, (name, L[k:k + g], c[k:k + g], r[k:k + g])


@SETTINGS
@given(batches())
def test_correct_always_beats_wrong_where_the_paper_promises_it(b):
    L, c, g = b
    for name in ("arora_zanette", "hapo"):
        r = length_reward(name, L, c, g, **HPARAMS[name]).tolist()
        good = [r[i] for i in range(len(L)) if c[i]]
        bad = [r[i] for i in range(len(L)) if not c[i]]
        if good and bad:
            assert min(good) > max(bad), name


@SETTINGS
@given(st.integers(0, 2 * MAXL), st.integers(1, 2 * MAXL), st.booleans())
def test_l1_exact_peaks_at_target(length, target, ok):
    r = length_reward("l1_exact", [length, target], [ok, ok], 1, target=target)
    assert r[1] >= r[0]
    assert math.isclose(float(r[1]), float(ok), abs_tol=1e-6)


@SETTINGS
@given(st.lists(st.integers(0, 400), min_size=1, max_size=12), st.integers(1, 300))
def test_dler_gives_truncated_responses_zero(L, cap):
    r = length_reward("dler", L, [1] * len(L), 1, max_len=cap)
    for length, v in zip(L, r.tolist()):
        assert v == (0.0 if length > cap else 1.0)


@SETTINGS
@given(batches())
def test_drpo_correct_never_negative_and_sums(b):
    L, c, g = b
    a = length_reward("drpo", L, c, g, max_len=MAXL).tolist()
    for k in range(0, len(L), g):
        pos = [a[i] for i in range(k, k + g) if c[i]]
        neg = [a[i] for i in range(k, k + g) if not c[i]]
        assert all(v >= 0 for v in pos) and all(v <= 0 for v in neg)
        if pos and neg:
            assert math.isclose(sum(pos), 1.0, abs_tol=1e-5)
            assert math.isclose(sum(neg), -1.0, abs_tol=1e-5)
        else:
            assert all(v == 0 for v in pos + neg)


@SETTINGS
@given(batches())
def test_kimi_bounded(b):
    L, c, g = b
    r = length_reward("kimi", L, c, g)
    assert (r >= -0.5 - 1e-6).all() and (r <= 0.5 + 1e-6).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(1, 300), min_size=4, max_size=4),
                          st.lists(st.booleans(), min_size=4, max_size=4),
                          st.sampled_from(["a", "b", "c"])), min_size=1, max_size=6))
def test_hapo_history_only_shrinks_and_tracks_minimum(steps):
    hapo = HAPO()
    seen: dict[str, int] = {}
    for L, c, pid in steps:
        before = dict(hapo.history)
        hapo(L, c, 4, prompt_ids=[pid])
        for k, v in before.items():
            assert hapo.history[k] <= v
        for length, ok in zip(L, c):
            if ok:
                seen[pid] = min(seen.get(pid, 10**9), length)
        assert hapo.history == seen


@SETTINGS
@given(batches())
def test_dynamic_sampling_keeps_exactly_groups_with_spread(b):
    L, c, g = b
    r = length_reward("kimi", L, c, g)
    keep, frac = dynamic_sampling_filter(r, g)
    rg = r.view(-1, g)
    want = (rg.max(1).values > rg.min(1).values).repeat_interleave(g)
    assert torch.equal(keep, want)
    assert math.isclose(frac, float(want.double().mean()), abs_tol=1e-12)


@settings(max_examples=30, deadline=None)
@given(batches(), st.data())
def test_a_bad_length_anywhere_is_named(b, data):
    L, c, g = b
    i = data.draw(st.integers(0, len(L) - 1))
    bad = data.draw(st.sampled_from([float("nan"), float("inf"), -1.0, 0.5]))
    L2 = [float(x) for x in L]
    L2[i] = bad
    name = data.draw(st.sampled_from(sorted(HPARAMS)))
    try:
        length_reward(name, L2, c, g, **HPARAMS[name])
    except DataError as e:
        assert f"lengths[{i}]" in str(e)
    else:
        raise AssertionError("no error")
