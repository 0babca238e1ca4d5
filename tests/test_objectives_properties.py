"""Property tests (hypothesis) of the invariants every objective must keep."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from lengthrl.analysis.audit import audit
from lengthrl.objectives import AGG_MODES, LOSSES, policy_loss

D = torch.float64
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def batches(draw, min_b=1, max_b=5, max_t=8, spread=1.0, equal_lengths=False, allow_empty=True):
    B = draw(st.integers(min_b, max_b))
    T = draw(st.integers(1, max_t))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    lo = 0 if allow_empty else 1
    if equal_lengths:
        lengths = torch.full((B,), draw(st.integers(max(lo, 1), T)))
    else:
        lengths = torch.randint(lo, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).to(D)
    old = -torch.rand(B, T, generator=g, dtype=D) * 10
    logp = old + spread * torch.randn(B, T, generator=g, dtype=D)
    adv = torch.randn(B, generator=g, dtype=D) * draw(st.sampled_from([0.0, 1.0, 100.0]))
    return logp, old, adv, mask


def grad_of(name, logp, old, adv, mask, **kw):
    x = logp.clone().requires_grad_(True)
    out = policy_loss(name, x, old, adv, mask, max_len=16, **({"group_size": 1} | kw))
    (g,) = torch.autograd.grad(out.loss, x)
    return out, g


@SETTINGS
@given(b=batches(spread=3.0), name=st.sampled_from(list(LOSSES)), mode=st.sampled_from(AGG_MODES))
def test_finite_for_any_valid_input(b, name, mode):
    out, g = grad_of(name, *b, loss_agg_mode=mode)
    assert torch.isfinite(out.loss) and torch.isfinite(g).all()
    assert all(torch.isfinite(v) for v in out.metrics.values())


@SETTINGS
@given(b=batches(), name=st.sampled_from(list(LOSSES)), extra=st.integers(1, 6))
def test_invariant_to_padding_length(b, name, extra):
    logp, old, adv, mask = b
    B = logp.shape[0]
    junk = torch.full((B, extra), -1e4, dtype=D)
    out1, g1 = grad_of(name, logp, old, adv, mask)
    out2, g2 = grad_of(name, torch.cat([logp, junk], 1), torch.cat([old, -junk], 1), adv,
                       torch.cat([mask, torch.zeros(B, extra, dtype=D)], 1))
    assert float(out2.loss) == pytest.approx(float(out1.loss), rel=1e-9, abs=1e-12)
    assert torch.allclose(g2[:, : logp.shape[1]], g1, rtol=1e-9, atol=1e-12) and (g2[:, logp.shape[1]:] == 0).all()


@SETTINGS
@given(lengths=st.lists(st.integers(1, 200), min_size=1, max_size=6), a=st.floats(-5, 5, allow_nan=False))
def test_luspo_per_token_gradient_does_not_depend_on_length(lengths, a):
    B, T = len(lengths), max(lengths)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).to(D)
    logp = -torch.rand(B, T, dtype=D)
    out, g = grad_of("luspo", logp, logp, torch.full((B,), a, dtype=D), mask)
    expected = -a / B  # dL/dlogp_t = -A/B for every token of every response
    assert torch.allclose(g[mask > 0], torch.full_like(g[mask > 0], expected), rtol=1e-9, atol=1e-12)


@SETTINGS
@given(b=batches(spread=0.3))
def test_gspo_equals_gspo_token_for_sequence_advantages(b):
    o1, g1 = grad_of("gspo", *b)
    o2, g2 = grad_of("gspo_token", *b)
    assert float(o1.loss) == pytest.approx(float(o2.loss), rel=1e-9, abs=1e-12)
    assert torch.allclose(g1, g2, rtol=1e-8, atol=1e-12)


@SETTINGS
@given(b=batches(equal_lengths=True, allow_empty=False, spread=0.5))
def test_grpo_equals_dapo_when_lengths_are_equal(b):
    o1, g1 = grad_of("grpo", *b, clip_high=0.28)
    o2, g2 = grad_of("dapo", *b, clip_high=0.28)
    assert float(o1.loss) == pytest.approx(float(o2.loss), rel=1e-9, abs=1e-12)
    assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(b=batches(spread=2.0), name=st.sampled_from(list(LOSSES)))
def test_zero_advantages_give_zero_gradient(b, name):
    logp, old, adv, mask = b
    out, g = grad_of(name, logp, old, torch.zeros_like(adv), mask)
    assert (g == 0).all() and float(out.loss) == 0.0


@SETTINGS
@given(b=batches(spread=1.0), name=st.sampled_from(list(LOSSES)), k=st.integers(1, 4))
def test_micro_batches_with_global_normalisers_sum_to_the_full_batch(b, name, k):
    """Gradient accumulation: the sum of micro-batch losses normalised by the global counts equals the loss of
    the whole batch (bnpo excepted: it normalises per micro-batch by definition)."""
    if name == "bnpo":
        return
    logp, old, adv, mask = b
    full, gfull = grad_of(name, logp, old, adv, mask)
    x = logp.clone().requires_grad_(True)
    total = 0.0
    n_tok, n_seq = mask.sum(), (mask.sum(-1) > 0).sum()
    for idx in torch.arange(logp.shape[0]).chunk(k):
        total = total + policy_loss(name, x[idx], old[idx], adv[idx], mask[idx], max_len=16,
                                    num_tokens=n_tok, num_seqs=n_seq).loss
    (g,) = torch.autograd.grad(total, x)
    assert float(total) == pytest.approx(float(full.loss), rel=1e-9, abs=1e-12)
    assert torch.allclose(g, gfull, rtol=1e-9, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 64), min_size=1, max_size=3, unique=True))
def test_audit_matches_the_analytical_weights_for_any_lengths(lengths):
    rows = audit(lengths=tuple(lengths), max_len=64)
    assert rows and all(r.ok for r in rows)


@SETTINGS
@given(b=batches(spread=0.5), beta=st.floats(0.001, 1.0))
def test_kl_term_is_nonnegative_and_zero_at_the_reference(b, beta):
    logp, old, adv, mask = b
    zero = torch.zeros_like(adv)
    at_ref = policy_loss("grpo", logp, old, zero, mask, beta=beta, ref_logp=logp)
    assert float(at_ref.loss) == pytest.approx(0.0, abs=1e-12)
    off = policy_loss("grpo", logp, old, zero, mask, beta=beta, ref_logp=old)
    assert float(off.loss) >= -1e-12 and math.isfinite(float(off.loss))
