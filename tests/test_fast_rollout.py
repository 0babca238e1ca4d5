"""FastEngine (the lean Llama/Qwen2 decoder) against HFEngine and the transformers forward on tiny random models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import GPT2Config, GPT2LMHeadModel

from lengthrl.errors import ConfigError, UnknownNameError
from lengthrl.models import load_policy, save_tiny_random_model
from lengthrl.rollout import (
    FastEngine,
    HFEngine,
    RolloutEngine,
    SamplingParams,
    compute_logprobs,
    fast_unsupported_reason,
    make_engine,
)
from lengthrl.rollout.fast import LeanDecoder
from runkit import on_device

SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
PROMPTS = ["left to right: 1+2*3\n", "count a in: abca\n", "sort: 93\n", "x"]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def policy(request, tmp_path_factory):
    d = save_tiny_random_model(tmp_path_factory.mktemp(request.param), arch=request.param, seed=3, **SMALL)
    return load_policy(d)


@pytest.fixture(scope="module")
def eos_policy(tmp_path_factory):
    """A model whose EOS logit is raised by a bias on lm_head, so responses end at varied lengths."""
    d = save_tiny_random_model(tmp_path_factory.mktemp("eos"), seed=5, **SMALL)
    model, tok = load_policy(d)
    head = model.lm_head
    new = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(head.weight)
        new.bias.zero_()
        new.bias[tok.eos_token_id] = 2.5
    model.lm_head = new
    return model, tok


def encode(tok, texts=PROMPTS):
    return [tok(t).input_ids for t in texts]


def assert_same(a, b, atol=1e-5):
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    assert torch.equal(a.lengths, b.lengths)
    assert torch.equal(a.truncated, b.truncated)
    assert torch.equal(a.prompt_ids, b.prompt_ids) and torch.equal(a.group_index, b.group_index)
    torch.testing.assert_close(a.logp, b.logp, atol=atol, rtol=0)


def test_protocol_and_supported(policy):
    model, tok = policy
    assert fast_unsupported_reason(model) is None
    assert isinstance(FastEngine(model, tok), RolloutEngine)


def test_step_logits_match_full_forward(policy):
    """Prefill + cached steps give the logits of a full transformers forward over the same left-padded rows."""
    model, tok = policy
    ids = encode(tok)
    P = max(map(len, ids))
    pad = tok.pad_token_id
    full = torch.tensor([[pad] * (P - len(s)) + s for s in ids])  # [B, P]
    mask = torch.tensor([[0] * (P - len(s)) + [1] * len(s) for s in ids])
    extra = torch.randint(3, len(tok), (len(ids), 6))  # 6 appended tokens per row
    dec = LeanDecoder(model)
    with torch.no_grad():
        cache = dec.new_cache(len(ids), P + 6, full.device, torch.float32)
        got = [dec.prefill(full, mask, cache)]
        pos = mask.sum(-1)
        km = torch.cat([mask.bool(), torch.ones(len(ids), 6, dtype=torch.bool)], 1)
        for t in range(5):
            got.append(dec.step(extra[:, t], pos + t, cache, P + t, km[:, None, None, : P + t + 1]))
        ids_all = torch.cat([full, extra], 1)
        m_all = torch.cat([mask, torch.ones_like(extra)], 1)
        pos_all = (m_all.cumsum(-1) - 1).clamp(min=0)
        ref = model(input_ids=ids_all, attention_mask=m_all, position_ids=pos_all).logits  # [B, P+6, V]
    for t, g in enumerate(got):
        torch.testing.assert_close(g, ref[:, P - 1 + t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("params", [SamplingParams(temperature=0, max_new_tokens=24),
                                    SamplingParams(temperature=1.0, max_new_tokens=24, seed=7),
                                    SamplingParams(temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=24, seed=1)])
def test_same_rollouts_as_hf(policy, params, device):
    """Greedy: identical tokens; sampled with the same seed: the same random stream, hence the same tokens."""
    model, tok = policy
    model = on_device(model, device)
    a = HFEngine(model, tok).generate(encode(tok), 3, params)
    b = FastEngine(model, tok).generate(encode(tok), 3, params)
    assert_same(a, b)


def test_logp_equals_compute_logprobs(policy, device):
    model, tok = policy
    model = on_device(model, device)
    b = FastEngine(model, tok).generate(encode(tok), 2, SamplingParams(temperature=1.0, max_new_tokens=16, seed=0))
    d = b.to(device)
    lp = compute_logprobs(model, d.prompt_ids, d.prompt_mask, d.response_ids, d.response_mask).cpu()
    torch.testing.assert_close(b.logp, lp, atol=1e-5, rtol=0)


@pytest.mark.parametrize("frac", [0.0, 0.5, 0.9])
def test_early_eos_and_compaction(eos_policy, frac, device):
    """Responses end at different lengths; any compaction threshold gives HFEngine's batch."""
    model, tok = eos_policy
    model = on_device(model, device)
    params = SamplingParams(temperature=1.0, max_new_tokens=20, seed=11)
    a = HFEngine(model, tok).generate(encode(tok), 4, params)
    b = FastEngine(model, tok, compact_frac=frac).generate(encode(tok), 4, params)
    assert len(set(a.lengths.tolist())) > 2 and bool((~a.truncated).any())  # the test exercises early EOS
    assert_same(a, b)
    ends = b.response_ids[torch.arange(len(b)), b.lengths - 1]
    assert torch.equal(ends[~b.truncated], torch.full_like(ends[~b.truncated], tok.eos_token_id))


def test_engine_generator_stream_matches_hf(eos_policy, device):
    """Without a per-call seed the engine's own generator continues across calls, as in HFEngine."""
    model, tok = eos_policy
    model = on_device(model, device)
    params = SamplingParams(temperature=1.0, max_new_tokens=12)
    hf, fe = HFEngine(model, tok, seed=4), FastEngine(model, tok, seed=4)
    for _ in range(2):
        assert_same(hf.generate(encode(tok), 2, params), fe.generate(encode(tok), 2, params))
    assert fe.state_dict()["generator"].equal(hf.state_dict()["generator"])


def test_sees_weight_updates(policy):
    """The decoder reads the live parameters: an in-place update changes its outputs like HF's."""
    model, tok = policy
    fe = FastEngine(model, tok)
    params = SamplingParams(temperature=0, max_new_tokens=10)
    before = fe.generate(encode(tok), 1, params)
    saved = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    try:
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight.mul_(-3.0)
        after = fe.generate(encode(tok), 1, params)
        assert_same(HFEngine(model, tok).generate(encode(tok), 1, params), after)
        assert not torch.allclose(before.logp, after.logp)
    finally:
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight.copy_(saved)


@settings(max_examples=8, deadline=None)
@given(lens=st.lists(st.integers(1, 9), min_size=1, max_size=4), n=st.integers(1, 3), T=st.integers(1, 12),
       seed=st.integers(0, 1000))
def test_property_matches_hf(eos_policy, device, lens, n, T, seed):
    """Any prompt lengths (left padding), group size and budget: FastEngine's batch is HFEngine's."""
    model, tok = eos_policy
    model = on_device(model, device)
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, len(tok), (k,), generator=g).tolist() for k in lens]
    params = SamplingParams(temperature=1.0, max_new_tokens=T, seed=seed)
    assert_same(HFEngine(model, tok).generate(prompts, n, params), FastEngine(model, tok).generate(prompts, n, params))


def tiny_gpt2():
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=64,
                                      eos_token_id=1, pad_token_id=0))


def test_fallback_and_errors(policy):
    model, tok = policy
    gpt2 = tiny_gpt2()
    assert "gpt2" in fast_unsupported_reason(gpt2)
    assert type(make_engine("auto", gpt2, eos_token_ids=1, pad_token_id=0)) is HFEngine
    assert type(make_engine("auto", model, tok)) is FastEngine
    assert type(make_engine("hf", model, tok)) is HFEngine
    with pytest.raises(ConfigError, match="rollout_engine"):
        make_engine("fast", gpt2, eos_token_ids=1, pad_token_id=0)
    with pytest.raises(UnknownNameError, match="auto, fast|hf"):
        make_engine("vllm", model, tok)
    with pytest.raises(ConfigError, match="compact_frac"):
        FastEngine(model, tok, compact_frac=1.0)
    with pytest.raises(ConfigError, match="n \\(responses"):
        FastEngine(model, tok).generate(encode(tok), 0, SamplingParams())


def test_config_key_rollout_engine():
    from lengthrl.train.validate import build_config

    assert build_config(overrides=["rollout_engine=fast"]).rollout_engine == "fast"
    assert build_config().rollout_engine == "auto"
    with pytest.raises(ConfigError, match="rollout_engine.*valid: hf, fast, auto"):
        build_config(overrides=["rollout_engine=turbo"])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prefix_logprobs_match_hf_forward(eos_policy, temperature):
    """compute_logprobs through the lean shared-prefix forward equals the transformers forward, values and
    gradients, on groups of identical prompts with varied response lengths."""
    model, tok = eos_policy
    b = FastEngine(model, tok).generate(encode(tok), 3, SamplingParams(temperature=1.0, max_new_tokens=14, seed=2))
    args = (model, b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask)
    params = list(model.parameters())
    ref, ref_ent = compute_logprobs(*args, temperature=temperature, return_entropy=True, shared_prefix=False)
    got, got_ent = compute_logprobs(*args, temperature=temperature, return_entropy=True, shared_prefix=True)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_ent, ref_ent, atol=1e-5, rtol=0)
    g_ref = torch.autograd.grad((ref * b.logp.exp()).sum(), params)
    g_got = torch.autograd.grad((got * b.logp.exp()).sum(), params)
    for x, y in zip(g_got, g_ref):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    one = compute_logprobs(model, b.prompt_ids[:2], b.prompt_mask[:2], b.response_ids[:2, :1], b.response_mask[:2, :1],
                           temperature=temperature)
    torch.testing.assert_close(one, ref[:2, :1], atol=1e-5, rtol=0)  # T = 1: the prompt's logits only


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_ignore_eos_gives_exactly_max_new_tokens(eos_policy, engine, device):
    """With an EOS-favouring model most responses end early; ignore_eos makes every one exactly T tokens."""
    model, tok = eos_policy
    model = on_device(model, device)
    T = 12
    eng = make_engine(engine, model, tok, seed=0)
    free = eng.generate(encode(tok), 4, SamplingParams(max_new_tokens=T, seed=1))
    assert int(free.lengths.min()) < T  # the bias does end responses early
    fixed = eng.generate(encode(tok), 4, SamplingParams(max_new_tokens=T, seed=1, ignore_eos=True))
    assert torch.equal(fixed.lengths, torch.full_like(fixed.lengths, T))
    assert bool(fixed.truncated.all())
    assert not bool((fixed.response_ids == tok.eos_token_id).any())
    assert bool(torch.isfinite(fixed.logp).all()) and bool((fixed.logp <= 0).all())


def test_banned_tokens_renormalise_the_rest():
    from lengthrl.rollout.sampling import sampling_logprobs

    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    lp = sampling_logprobs(logits, SamplingParams(), banned=torch.tensor([3]))
    assert lp[0, 3] == float("-inf")
    expect = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0]), -1)  # by hand: the three kept tokens renormalised
    torch.testing.assert_close(lp[0, :3], expect)
