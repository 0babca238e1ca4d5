"""Rollout engine and compute_logprobs on tiny random Llama/Qwen2 models saved and loaded like a user's."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.errors import ConfigError
from lengthrl.models import load_policy, save_tiny_random_model
from lengthrl.rollout import (
    HFEngine,
    RolloutBatch,
    RolloutEngine,
    SamplingParams,
    compute_logprobs,
    entropy_from_logits,
    sampling_logprobs,
    selective_log_softmax,
)
from runkit import on_device

SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
PROMPTS = ["left to right: 1+2*3\n", "count a in: abca\n", "sort: 93\n"]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def policy(request, tmp_path_factory):
    d = save_tiny_random_model(tmp_path_factory.mktemp(request.param), arch=request.param, seed=3, pad_is_eos=True, **SMALL)
    return load_policy(d)


def with_eos_bias(model, eos_id: int, bias: float):
    """Add a constant bias to the EOS logit (the rest of the model unchanged): EOS becomes likely or impossible."""
    head = model.lm_head
    new = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(head.weight)
        new.bias.zero_()
        new.bias[eos_id] = bias
    model.lm_head = new
    return model


@pytest.fixture(scope="module")
def eos_policy(tmp_path_factory):
    d = save_tiny_random_model(tmp_path_factory.mktemp("eos"), seed=5, pad_is_eos=True, **SMALL)
    model, tok = load_policy(d)
    return with_eos_bias(model, tok.eos_token_id, 3.0), tok


def encode(tok, texts=PROMPTS):
    return [tok(t).input_ids for t in texts]


def test_engine_satisfies_protocol(policy):
    assert isinstance(HFEngine(*policy), RolloutEngine)


def test_layout_eos_in_mask_when_pad_is_eos(eos_policy):
    model, tok = eos_policy
    assert tok.pad_token_id == tok.eos_token_id
    b = HFEngine(model, tok, seed=0).generate(encode(tok), n=8, params=SamplingParams(max_new_tokens=24))
    assert len(b) == 24 and b.num_groups == 3
    assert b.group_index.tolist() == [g for g in range(3) for _ in range(8)]  # contiguous groups
    assert torch.equal(b.lengths, b.response_mask.sum(1))
    ended = ~b.truncated
    assert ended.sum() >= 12 and b.truncated.sum() >= 1  # bias 3: most rows end, not all (measured with seed 0)
    for row in range(len(b)):
        n = int(b.lengths[row])
        toks = b.response_ids[row, :n].tolist()
        if not b.truncated[row]:
            assert toks[-1] == tok.eos_token_id and tok.eos_token_id not in toks[:-1]
            assert b.response_mask[row, n - 1] == 1  # the EOS is a response token even though it equals pad
        else:
            assert n == 24 and tok.eos_token_id not in toks
        assert b.response_mask[row, n:].sum() == 0 and (b.logp[row, n:] == 0).all()
        assert (b.logp[row, :n] < 0).all()
    # prompts are left-padded
    assert (b.prompt_mask[:, -1] == 1).all()
    assert b.prompt_ids.shape[1] == max(len(p) for p in encode(tok))
    assert b.response_ids.shape[1] == int(b.lengths.max())


def test_truncation_when_eos_impossible(tmp_path):
    d = save_tiny_random_model(tmp_path / "m", seed=1, **SMALL)
    model, tok = load_policy(d)
    with_eos_bias(model, tok.eos_token_id, -1e4)
    b = HFEngine(model, tok).generate(encode(tok), n=2, params=SamplingParams(max_new_tokens=7))
    assert b.truncated.all() and (b.lengths == 7).all() and b.response_mask.sum() == 6 * 7


def test_eos_always_gives_length_one(tmp_path):
    d = save_tiny_random_model(tmp_path / "m", seed=1, **SMALL)
    model, tok = load_policy(d)
    with_eos_bias(model, tok.eos_token_id, 1e4)
    b = HFEngine(model, tok).generate(encode(tok), n=2, params=SamplingParams(max_new_tokens=1))
    # EOS on the last allowed token: finished, not truncated
    assert (b.lengths == 1).all() and not b.truncated.any()
    assert (b.response_ids[:, 0] == tok.eos_token_id).all()


@pytest.mark.parametrize("use_cache", [True, False])
def test_logp_equals_fresh_forward_at_temperature_one(eos_policy, use_cache, device):
    model, tok = eos_policy
    model = on_device(model, device)
    b = HFEngine(model, tok, seed=1, use_cache=use_cache).generate(encode(tok), 4, SamplingParams(max_new_tokens=20))
    assert len(set(b.lengths.tolist())) > 2  # rows left the batch at different steps
    d = b.to(device)
    lp = compute_logprobs(model, d.prompt_ids, d.prompt_mask, d.response_ids, d.response_mask).cpu()
    assert lp.shape == b.logp.shape
    assert torch.allclose(lp, b.logp, atol=1e-5)
    # independent check without padding: each row alone, one plain causal forward
    for row in (0, 5, 11):
        prompt = b.prompt_ids[row][b.prompt_mask[row] == 1]
        resp = b.response_ids[row, : b.lengths[row]]
        ids = torch.cat([prompt, resp])[None].to(device)
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        ref = torch.log_softmax(logits.float(), -1).gather(-1, resp[:, None].to(device)).squeeze(-1).cpu()
        assert torch.allclose(ref, b.logp[row, : b.lengths[row]], atol=1e-5)


def test_top_k_one_equals_transformers_greedy(policy):
    model, tok = policy
    prompts = encode(tok)
    b = HFEngine(model, tok).generate(prompts, 1, SamplingParams(temperature=0.7, top_k=1, max_new_tokens=12))
    for i, p in enumerate(prompts):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id)[0, len(p):]
        n = int(b.lengths[i])
        assert b.response_ids[i, :n].tolist() == ref[:n].tolist()
    g = HFEngine(model, tok).generate(prompts, 1, SamplingParams(temperature=0, max_new_tokens=12))
    assert torch.equal(g.response_ids, b.response_ids)


def test_no_cache_loop_gives_same_greedy_tokens(policy, device):
    model, tok = policy
    model = on_device(model, device)
    p = SamplingParams(temperature=0, max_new_tokens=10)
    a = HFEngine(model, tok).generate(encode(tok), 2, p)
    c = HFEngine(model, tok, use_cache=False).generate(encode(tok), 2, p)
    assert torch.equal(a.response_ids, c.response_ids)
    assert torch.allclose(a.logp, c.logp, atol=1e-5)


def test_seeded_reproducibility(policy, device):
    model, tok = policy
    model = on_device(model, device)
    p = SamplingParams(max_new_tokens=10, seed=123)
    a = HFEngine(model, tok).generate(encode(tok), 4, p)
    b = HFEngine(model, tok, seed=99).generate(encode(tok), 4, p)
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.logp, b.logp)
    # engine generator: same seed, same sequence of calls; state round trip
    e1, e2 = HFEngine(model, tok, seed=7), HFEngine(model, tok, seed=7)
    q = SamplingParams(max_new_tokens=10)
    first = e1.generate(encode(tok), 4, q)
    assert torch.equal(first.response_ids, e2.generate(encode(tok), 4, q).response_ids)
    state = e1.state_dict()
    nxt = e1.generate(encode(tok), 4, q)
    assert not torch.equal(nxt.response_ids, first.response_ids)
    e1.load_state_dict(state)
    assert torch.equal(e1.generate(encode(tok), 4, q).response_ids, nxt.response_ids)


def test_sampling_frequency_matches_probability(tmp_path):
    # constant logits (zero weights): P(EOS first) = e^b / (e^b + V - 1)
    d = save_tiny_random_model(tmp_path / "m", seed=1, **SMALL)
    model, tok = load_policy(d)
    with_eos_bias(model, tok.eos_token_id, 4.0)
    torch.nn.init.zeros_(model.lm_head.weight)
    V = model.lm_head.out_features
    p_eos = torch.tensor(4.0).exp() / (torch.tensor(4.0).exp() + V - 1)
    b = HFEngine(model, tok, seed=0).generate([tok("x").input_ids], 2000, SamplingParams(max_new_tokens=1))
    freq = (b.response_ids[:, 0] == tok.eos_token_id).float().mean()
    sd = (p_eos * (1 - p_eos) / 2000).sqrt()
    assert abs(freq - p_eos) < 4 * sd
    assert torch.allclose(b.logp[b.response_ids[:, 0] == tok.eos_token_id], p_eos.log(), atol=1e-5)


def test_sampling_logprobs_hand_values():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    top_p = sampling_logprobs(logits, SamplingParams(top_p=0.7)).exp()
    assert torch.allclose(top_p, torch.tensor([[0.625, 0.375, 0, 0]]), atol=1e-6)
    top_p8 = sampling_logprobs(logits, SamplingParams(top_p=0.8)).exp()
    assert torch.allclose(top_p8, torch.tensor([[0.625, 0.375, 0, 0]]), atol=1e-6)  # 0.5+0.3 reaches 0.8
    top_k = sampling_logprobs(logits, SamplingParams(top_k=3)).exp()
    assert torch.allclose(top_k, torch.tensor([[0.5, 0.3, 0.15, 0]]) / 0.95, atol=1e-6)
    temp = sampling_logprobs(logits, SamplingParams(temperature=0.5)).exp()
    assert torch.allclose(temp, probs**2 / (probs**2).sum(), atol=1e-6)
    greedy = sampling_logprobs(logits, SamplingParams(temperature=0))
    assert torch.allclose(greedy.exp(), probs, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), top_p=st.floats(0.05, 1.0), top_k=st.sampled_from([0, 2, 3, 5, 12]))
def test_property_truncated_distribution(seed, top_p, top_k):
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(seed)) * 3
    lp = sampling_logprobs(logits, SamplingParams(top_p=top_p, top_k=top_k))
    p = lp.exp()
    assert torch.allclose(p.sum(-1), torch.ones(3), atol=1e-5)
    kept = torch.isfinite(lp)
    assert (kept.sum(-1) >= 1).all()
    if top_k:
        assert (kept.sum(-1) <= top_k).all()
    # kept tokens are the most likely ones
    for r in range(3):
        if (~kept[r]).any():
            assert logits[r][kept[r]].min() >= logits[r][~kept[r]].max()
    if top_p < 1 and not top_k:
        base = torch.softmax(logits, -1)
        mass = (base * kept).sum(-1)
        assert (mass >= top_p - 1e-5).all()
        # without its least likely kept token, the set would not reach top_p
        least = torch.where(kept, base, torch.full_like(base, 2.0)).min(-1).values
        assert ((mass - least) < top_p + 1e-6).all()


def test_compute_logprobs_is_differentiable_and_masks(policy, device):
    model, tok = policy
    model = on_device(model, device)
    b = HFEngine(model, tok, seed=2).generate(encode(tok), 2, SamplingParams(max_new_tokens=6)).to(device)
    b.response_mask[0, 3:] = 0  # pretend row 0 ended early
    model.zero_grad()
    lp, ent = compute_logprobs(model, b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask, return_entropy=True)
    assert (lp[0, 3:] == 0).all() and (ent[0, 3:] == 0).all() and (ent[1][b.response_mask[1] == 1] > 0).all()
    (lp.sum() + ent.sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()
    # temperature scales the logits
    lp2 = compute_logprobs(model, b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask, temperature=2.0)
    assert not torch.allclose(lp2, lp)


def test_selective_log_softmax_and_entropy_hand_values():
    logits = torch.randn(5, 4, 7)
    idx = torch.randint(0, 7, (5, 4))
    ref = torch.log_softmax(logits, -1).gather(-1, idx[..., None]).squeeze(-1)
    assert torch.allclose(selective_log_softmax(logits, idx, chunk_rows=2), ref, atol=1e-6)
    p = torch.softmax(logits, -1)
    assert torch.allclose(entropy_from_logits(logits, chunk_rows=3), -(p * p.log()).sum(-1), atol=1e-5)
    uniform = torch.zeros(1, 1, 8)
    assert torch.allclose(entropy_from_logits(uniform), torch.log(torch.tensor(8.0)))


def test_bad_inputs_name_the_field(policy):
    model, tok = policy
    e = HFEngine(model, tok)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingParams(temperature=float("nan"))
    with pytest.raises(ConfigError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ConfigError, match="top_k"):
        SamplingParams(top_k=-2)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ConfigError, match="prompt_ids"):
        e.generate([], 2, SamplingParams())
    with pytest.raises(ConfigError, match="prompt 1"):
        e.generate([[2, 5], []], 2, SamplingParams())
    with pytest.raises(ConfigError, match="n "):
        e.generate([[2]], 0, SamplingParams())
    with pytest.raises(ConfigError, match="response_mask"):
        compute_logprobs(model, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long),
                         torch.ones(2, 4, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))


def test_batch_select_and_texts(eos_policy):
    model, tok = eos_policy
    b = HFEngine(model, tok, seed=0).generate(encode(tok), 2, SamplingParams(max_new_tokens=8))
    sub = b.select([2, 3])
    assert isinstance(sub, RolloutBatch) and len(sub) == 2 and (sub.group_index == 1).all()
    texts = b.texts(tok)
    assert len(texts) == 6 and all("<eos>" not in t for t in texts)
    assert tok.decode(b.response_token_lists()[0], skip_special_tokens=True) == texts[0]
