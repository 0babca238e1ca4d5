"""Fuzzing (hypothesis) of every policy loss, advantage estimator and length reward over random shapes and
values, hostile hyperparameters included: the result is finite (with finite gradients) or a clear
ConfigError / DataError. Also the data loader over random text and random JSON rows."""

import json
import math
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from lengthrl.advantages import ADVANTAGES, compute_advantages
from lengthrl.errors import ConfigError, DataError
from lengthrl.objectives import AGG_MODES, LOSSES, policy_loss
from lengthrl.rewards import LENGTH_REWARDS, CompositeReward, length_reward
from lengthrl.rewards.probe import probe_hparams
from lengthrl.tasks.data import load_samples

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLEAN = (ConfigError, DataError)
FLOATS = st.floats(-1e6, 1e6, allow_nan=False, width=32)
HOSTILE = st.one_of(FLOATS, st.sampled_from([0, -1, 0.0, float("nan"), float("inf"), -float("inf"), 1e30, True,
                                             "x", None, [], -(2**40)]))


@st.composite
def loss_inputs(draw):
    """logp, old_logp in [-20, 0] (|log-ratio| <= 20), a random 0/1 mask (empty rows and all-zero masks
    included), advantages of any scale up to 1e3, at random shapes."""
    B, T = draw(st.integers(1, 6)), draw(st.integers(1, 10))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    spread = draw(st.sampled_from([0.0, 1e-3, 1.0, 20.0]))
    old = -torch.rand(B, T, generator=g) * draw(st.sampled_from([0.0, 1.0, 20.0]))
    logp = (old + spread * torch.randn(B, T, generator=g)).clamp(-20, 0)
    mask = (torch.rand(B, T, generator=g) < draw(st.sampled_from([0.0, 0.5, 1.0]))).float()
    adv = torch.randn(B, generator=g) * draw(st.sampled_from([0.0, 1.0, 1e3]))
    return logp, old, adv, mask


@pytest.mark.parametrize("name", list(LOSSES))
@FAST
@given(data=loss_inputs(), mode=st.sampled_from([None, *AGG_MODES]),
       clip=st.one_of(st.none(), st.floats(0, 10), HOSTILE))
def test_fuzz_every_loss(name, data, mode, clip):
    logp, old, adv, mask = data
    x = logp.clone().requires_grad_(True)
    kw = {"max_len": logp.shape[1], "loss_agg_mode": mode, "clip_high": clip}
    try:
        out = policy_loss(name, x, old, adv, mask, **{k: v for k, v in kw.items() if v is not None})
    except CLEAN:
        return
    assert out.loss.dim() == 0 and torch.isfinite(out.loss), (name, out.loss)
    (g,) = torch.autograd.grad(out.loss, x)
    assert torch.isfinite(g).all() and (g[mask == 0] == 0).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_nan_inputs_to_a_loss_are_named(name):
    x, m = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(ConfigError, match="advantages contain NaN"):
        policy_loss(name, x, x, torch.tensor([1.0, float("nan")]), m, max_len=3)
    out = policy_loss(name, torch.full((2, 3), float("nan")), x, torch.ones(2), torch.zeros(2, 3), max_len=3)
    assert torch.isfinite(out.loss)  # NaN only under the mask (padding) never leaks


@pytest.mark.parametrize("name", list(ADVANTAGES))
@FAST
@given(P=st.integers(1, 5), G=st.integers(1, 6), data=st.data(), eps=st.one_of(st.none(), HOSTILE))
def test_fuzz_every_estimator(name, P, G, data, eps):
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    kind = data.draw(st.sampled_from(["binary", "normal", "huge", "constant"]))
    R = {"binary": lambda: (torch.rand(P * G, generator=g) < 0.5).float(),
         "normal": lambda: torch.randn(P * G, generator=g),
         "huge": lambda: torch.randn(P * G, generator=g) * 1e6,
         "constant": lambda: torch.full((P * G,), data.draw(FLOATS))}[kind]()
    hp = {"eps": eps} if eps is not None and "eps" in ADVANTAGES[name].hparams else {}
    per = {k: torch.randint(1, 5, (P * G,), generator=g).float() * 16 for k in ADVANTAGES[name].per_response}
    try:
        A = compute_advantages(name, R, G, **hp, **per)
    except CLEAN:
        assert hp, "valid inputs were refused"
        return
    assert A.shape == R.shape and torch.isfinite(A).all()
    equal = (R.view(P, G).max(-1).values == R.view(P, G).min(-1).values)
    if name not in ("batch", "hbpo"):  # batch whitening divides by the batch std (its all-equal groups are
        # still 0); hbpo's intra-budget term is absolute
        assert (A.view(P, G)[equal] == 0).all()


@pytest.mark.parametrize("name", list(ADVANTAGES))
def test_estimator_errors_are_named(name):
    with pytest.raises(ConfigError, match=r"index \[1\] are NaN or inf"):
        compute_advantages(name, torch.tensor([0.0, float("nan")]), 2)
    with pytest.raises(ConfigError, match="do not split into groups"):
        compute_advantages(name, torch.zeros(5), 2)
    with pytest.raises(ConfigError, match="group_size must be"):
        compute_advantages(name, torch.zeros(4), 0)


@pytest.mark.parametrize("name", list(LENGTH_REWARDS))
@FAST
@given(P=st.integers(1, 4), G=st.sampled_from([4, 8]), max_len=st.integers(16, 128), data=st.data())
def test_fuzz_every_length_reward(name, P, G, max_len, data):
    N = P * G
    lengths = torch.tensor(data.draw(st.lists(st.integers(0, max_len), min_size=N, max_size=N)))
    correct = torch.tensor(data.draw(st.lists(st.booleans(), min_size=N, max_size=N)))
    hp = probe_hparams(max_len, N, G).get(name, {})
    hp = {k: (v[:N] if isinstance(v, torch.Tensor) else v) for k, v in hp.items()}
    if data.draw(st.booleans()) and hp:  # one hyperparameter replaced by a hostile value
        key = data.draw(st.sampled_from(sorted(hp)))
        hp[key] = data.draw(HOSTILE)
    try:
        r = length_reward(name, lengths, correct, G, **hp)
    except CLEAN:
        return
    assert r.shape == (N,) and torch.isfinite(r).all(), (name, hp, r)


@FAST
@given(terms=st.lists(st.fixed_dictionaries({"name": st.sampled_from(["correct", "format", *LENGTH_REWARDS]),
                                             "weight": HOSTILE}), min_size=0, max_size=3),
       extra=st.dictionaries(st.sampled_from(["max_len", "cache_len", "target", "alpha", "bogus"]), HOSTILE,
                             max_size=2))
def test_fuzz_composite_reward_configs(terms, extra):
    config = [t | extra for t in terms]
    try:
        reward = CompositeReward.from_config(config)
    except CLEAN:
        return
    n = 4
    try:
        total, parts = reward(torch.tensor([1, 5, 9, 3]), torch.tensor([1, 0, 1, 0]), 2,
                              format_ok=torch.ones(n, dtype=torch.bool), prompt_ids=["a", "a", "b", "b"])
    except CLEAN:
        return
    assert torch.isfinite(total).all() and all(torch.isfinite(v).all() for v in parts.values())


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=12)
                           | st.floats(allow_nan=True), lambda c: st.lists(c, max_size=3), max_leaves=4)


@settings(max_examples=20, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzz_data_loader_random_text(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.jsonl"
        p.write_text(text)
        try:
            out = load_samples(p)
        except DataError:
            return
        assert all(s.prompt.strip() and s.answer.strip() for s in out)


@settings(max_examples=15, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(["prompt", "answer", "id", "x"]), JSON_VALUES, max_size=4),
                     min_size=1, max_size=4))
def test_fuzz_data_loader_random_rows(rows):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        try:
            out = load_samples(p)
        except DataError:
            return
        assert len(out) == len(rows) and all(isinstance(s.prompt, str) and s.prompt.strip() for s in out)
