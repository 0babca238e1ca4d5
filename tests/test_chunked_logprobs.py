"""The chunked LM head (lengthrl.rollout.chunked): the same log-probs, entropies and gradients as the full-logits
path, for any chunking, temperature and padding; no [N, V] tensor is kept for the backward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.rollout import compute_logprobs
from lengthrl.rollout.chunked import AUTO_LOGITS, chunked_head_logprobs, resolve_chunk


def naive(h, head, index, temperature):
    z = (F.linear(h, head.weight, head.bias) / temperature).float()
    logp = torch.log_softmax(z, -1).gather(-1, index[..., None]).squeeze(-1)
    ent = torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)
    return logp, ent


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 7), V=st.integers(2, 50), H=st.integers(1, 9),
       chunk=st.integers(1, 40), temperature=st.sampled_from([1.0, 0.6, 1.7]), bias=st.booleans(),
       seed=st.integers(0, 999))
def test_values_and_gradients_equal_full_logits(device, B, T, V, H, chunk, temperature, bias, seed):
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(H, V, bias=bias)
    with torch.no_grad():
        head.weight.copy_(torch.randn(V, H, generator=g))
        if bias:
            head.bias.copy_(torch.randn(V, generator=g))
    head.to(device)
    h = torch.randn(B, T, H, generator=g).to(device).requires_grad_()
    index = torch.randint(0, V, (B, T), generator=g).to(device)
    w_out = torch.randn(B, T, generator=g)  # an arbitrary upstream gradient (masked rows: zeros)
    w_out[torch.rand(B, T, generator=g) < 0.3] = 0
    w_out = w_out.to(device)
    logp, ent = chunked_head_logprobs(h, head, index, temperature, chunk)
    (logp * w_out).sum().backward()
    got = (h.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone() if bias else None)
    h.grad = None
    head.zero_grad()
    ref_logp, ref_ent = naive(h, head, index, temperature)
    (ref_logp * w_out).sum().backward()
    assert logp.dtype == torch.float32 and logp.shape == (B, T)
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
    assert not ent.requires_grad  # a metric
    torch.testing.assert_close(got[0], h.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], head.weight.grad, atol=1e-5, rtol=1e-5)
    if bias:
        torch.testing.assert_close(got[2], head.bias.grad, atol=1e-5, rtol=1e-5)


def test_hand_value():
    head = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0], [1.0]]))
    h = torch.tensor([[[torch.log(torch.tensor(3.0))]]], requires_grad=True)  # logits [0, log 3]: p = [1/4, 3/4]
    logp, _ = chunked_head_logprobs(h, head, torch.tensor([[1]]), 1.0, 1)
    assert logp.item() == pytest.approx(torch.log(torch.tensor(0.75)).item(), abs=1e-6)
    logp.sum().backward()  # d log p_1 / dh = w_1 - E_p[w] = 1 - 3/4
    assert h.grad.item() == pytest.approx(0.25, abs=1e-6)


def test_resolve_chunk():
    assert resolve_chunk(-1, 10**9, 151_936) is None  # off
    assert resolve_chunk(0, 8 * 1024, 151_936) == AUTO_LOGITS // 151_936 == 441
    assert resolve_chunk(0, 441, 151_936) is None  # fits one chunk: the full-logits path
    assert resolve_chunk(0, 6144, 40) is None  # a small vocabulary never needs chunks
    assert resolve_chunk(5, 6, 40) == 5 and resolve_chunk(5, 5, 40) is None


def _batch(V, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, P, T = 4, 5, 7
    pid = torch.randint(3, V, (B, P), generator=g)
    pm = torch.ones(B, P, dtype=torch.long)
    pm[0, :2] = 0  # a left-padded prompt
    rid = torch.randint(3, V, (B, T), generator=g)
    rm = torch.ones(B, T, dtype=torch.long)
    rm[1, 4:] = 0  # padded responses, one of a single token
    rm[2, 1:] = 0
    rid = rid.masked_fill(rm == 0, 0)
    return pid, pm, rid, rm, torch.randn(B, T, generator=g)


@pytest.mark.parametrize("shared_prefix", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_compute_logprobs_chunked_equals_full(micro_dir, shared_prefix, temperature, device):
    from lengthrl.models import load_policy

    model, _ = load_policy(micro_dir, device=device)
    model.train()
    pid, pm, rid, rm, w = (t.to(device) for t in _batch(model.config.vocab_size))
    runs = []
    for chunk in (-1, 3):
        model.zero_grad(set_to_none=True)
        logp, ent = compute_logprobs(model, pid, pm, rid, rm, temperature=temperature, return_entropy=True,
                                     shared_prefix=shared_prefix, logprob_chunk=chunk)
        (logp * w).sum().backward()
        runs.append((logp.detach(), ent, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (a, ea, ga), (b, eb, gb) = runs
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eb, ea, atol=1e-5, rtol=1e-5)
    assert (b[rm == 0] == 0).all() and (eb[rm == 0] == 0).all()
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], atol=1e-5, rtol=1e-5)
    assert ga["model.embed_tokens.weight"].abs().sum() > 0  # the (tied) head got its gradient


def _largest_saved_logits(fn, V: int) -> int:
    """The most elements of any tensor with a last dimension of V that autograd keeps for the backward."""
    sizes = [0]

    def pack(t):
        if t.ndim and t.shape[-1] == V:
            sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return max(sizes)


def test_no_full_logits_kept_for_backward(micro_dir):
    from lengthrl.models import load_policy

    model, _ = load_policy(micro_dir)
    model.train()
    V = model.config.vocab_size
    pid, pm, rid, rm, _ = _batch(V)
    B, T = rid.shape
    full = _largest_saved_logits(lambda: compute_logprobs(model, pid, pm, rid, rm, logprob_chunk=-1), V)
    chunked = _largest_saved_logits(lambda: compute_logprobs(model, pid, pm, rid, rm, logprob_chunk=3), V)
    assert full >= B * T * V  # today's path keeps the logits
    assert chunked <= V * model.config.hidden_size  # only the head's weight [V, H]: no [N, V] activation


def test_config_key(micro_dir):
    from lengthrl.errors import ConfigError
    from lengthrl.train.validate import build_config

    assert build_config().logprob_chunk == 0
    with pytest.raises(ConfigError, match="logprob_chunk"):
        build_config(overrides=["logprob_chunk=-2"])


def test_bfloat16_model_matches_its_full_logits_path(micro_dir):
    """A bf16 model: the chunked head computes each chunk's logits in bf16 and casts to float32, as the full path
    does, so the log-probs agree to bf16 rounding of the softmax sums and are float32."""
    from lengthrl.models import load_policy

    model, _ = load_policy(micro_dir, dtype="bfloat16")
    model.train()
    pid, pm, rid, rm, w = _batch(model.config.vocab_size)
    out = []
    for chunk in (-1, 3):
        model.zero_grad(set_to_none=True)
        logp = compute_logprobs(model, pid, pm, rid, rm, logprob_chunk=chunk)
        (logp * w).sum().backward()
        out.append((logp.detach(), model.model.embed_tokens.weight.grad.float()))
    assert out[1][0].dtype == torch.float32
    torch.testing.assert_close(out[1][0], out[0][0], atol=2e-2, rtol=0)
    cos = F.cosine_similarity(out[1][1].flatten(), out[0][1].flatten(), dim=0)
    assert cos > 0.99
