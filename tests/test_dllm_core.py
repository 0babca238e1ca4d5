"""Diffusion organism: model directory round trip, LLaDA loss on a hand example, exact AR-order log-probs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.dllm.forward import full_logits
from lengthrl.dllm.logprobs import ESTIMATORS, ar_logprobs, ar_logprobs_loop
from lengthrl.dllm.model import (
    TinyDiffusionConfig, char_tokenizer, load_diffusion_model, save_diffusion_model, tiny_diffusion_model,
)
from lengthrl.dllm.pretrain import build_diffusion_organism, encode_samples, masked_diffusion_loss
from lengthrl.errors import ConfigError, DataError
from lengthrl.tasks.base import Sample, Score, Task

TOK = char_tokenizer()
MASK = TOK.mask_token_id


class TinyAdd(Task):
    """a+b= -> a+b over single digits (a test-local Task)."""

    name = "tiny_add"

    def samples(self, split="train", n=None, seed=0):
        pairs = [(a, b) for a in range(10) for b in range(10) if ((a + b) % 4 == 0) == (split == "test")]
        out = [Sample(id=f"{a}+{b}", prompt=f"{a}+{b}=", answer=str(a + b)) for a, b in pairs]
        return out if n is None else out[:n]

    def score(self, sample, response):
        return Score(correct=response.strip() == sample.answer, reward=float(response.strip() == sample.answer))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_diffusion_model(TOK, TinyDiffusionConfig(hidden_size=32, intermediate_size=64), seed=1)


def test_save_load_roundtrip(tmp_path, model):
    save_diffusion_model(model, TOK, tmp_path / "m")
    got = load_diffusion_model(tmp_path / "m")
    assert got.mask_token_id == MASK
    assert (tmp_path / "m" / "model.safetensors").is_file()
    x = torch.tensor([TOK("3+4=", add_special_tokens=False)["input_ids"] + [MASK, MASK]])
    assert torch.allclose(full_logits(got.model, x), full_logits(model, x), atol=1e-6)
    assert got.tokenizer.decode([5, 6]) == TOK.decode([5, 6])


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="config.json"):
        load_diffusion_model(tmp_path)


def test_tokenizer_without_mask_is_rejected():
    from transformers import PreTrainedTokenizerFast

    tok = char_tokenizer()
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, pad_token="<pad>", eos_token="<eos>")
    with pytest.raises(ConfigError, match="mask"):
        tiny_diffusion_model(bare)


class OneHotModel(torch.nn.Module):
    """logits = fixed table[token]: makes the LLaDA loss computable by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None):
        return type("O", (), {"logits": self.table[input_ids]})()


def test_masked_diffusion_loss_hand_example(device):
    # vocab 3: 0, 1, mask=2. At a masked position logits are [log .5, log .25, log .25] -> p(0)=.5, p(1)=.25
    table = torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25]]))
    m = OneHotModel(table).to(device)
    prompt = torch.tensor([[0], [1]], device=device)
    resp = torch.tensor([[0, 1, 1], [1, 0, 0]], device=device)
    masked = torch.tensor([[1, 1, 0], [0, 0, 1]], dtype=torch.bool, device=device)
    t = torch.tensor([0.5, 0.25], device=device)
    eps = 1e-3
    p = [(1 - eps) * 0.5 + eps, (1 - eps) * 0.25 + eps]
    # row 0: masked tokens 0 and 1 -> -log .5 - log .25; row 1: masked token 0 -> -log .5; each / p_b / |y|=3
    want = ((-math.log(0.5) - math.log(0.25)) / p[0] / 3 + (-math.log(0.5)) / p[1] / 3) / 2
    got = masked_diffusion_loss(m, prompt, resp, 2, t=t, masked=masked, eps=eps)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # response_mask shortens |y| of row 1 to 2 and drops its masked token at position 2
    rm = torch.tensor([[1, 1, 1], [1, 1, 0]], device=device)
    got2 = masked_diffusion_loss(m, prompt, resp, 2, t=t, masked=masked, eps=eps, response_mask=rm)
    assert got2.item() == pytest.approx(((-math.log(0.5) - math.log(0.25)) / p[0] / 3) / 2, rel=1e-6)
    with pytest.raises(ConfigError, match="t must be"):
        masked_diffusion_loss(m, prompt, resp, 2, t=torch.tensor([0.5, float("nan")], device=device))


def test_encode_samples_pads_with_eos_and_rejects_long():
    s = [Sample(id="a", prompt="1+2=", answer="3"), Sample(id="b", prompt="10+2=", answer="12")]
    pids, pmask, rids = encode_samples(TOK, s, gen_length=4)
    assert pids.shape == (2, 5) and pmask[0].tolist() == [0, 1, 1, 1, 1]
    eos = TOK.eos_token_id
    assert rids[0].tolist()[1:] == [eos] * 3 and rids[1].tolist()[2:] == [eos] * 2
    with pytest.raises(DataError, match="gen_length"):
        encode_samples(TOK, s, gen_length=2)


def _batch(B, P, T, seed):
    g = torch.Generator().manual_seed(seed)
    pids = torch.randint(4, len(TOK), (B, P), generator=g)
    rids = torch.randint(4, len(TOK), (B, T), generator=g)
    pmask = torch.ones(B, P, dtype=torch.long)
    rmask = torch.ones(B, T, dtype=torch.long)
    for b in range(B):
        k = int(torch.randint(0, max(P - 1, 1), (1,), generator=g))
        pmask[b, :k] = 0
        pids[b, :k] = TOK.pad_token_id
        n = int(torch.randint(1, T + 1, (1,), generator=g))
        rmask[b, n:] = 0
    return pids, pmask, rids, rmask


@settings(max_examples=12, deadline=None)
@given(B=st.integers(1, 3), P=st.integers(1, 6), T=st.integers(1, 7), chunk=st.integers(1, 9),
       seed=st.integers(0, 100))
def test_ar_logprobs_equals_loop(model, B, P, T, chunk, seed):
    pids, pmask, rids, rmask = _batch(B, P, T, seed)
    fast = ar_logprobs(model, pids, rids, MASK, chunk_size=chunk, prompt_mask=pmask, response_mask=rmask)
    slow = ar_logprobs_loop(model, pids, rids, MASK, prompt_mask=pmask, response_mask=rmask)
    assert fast.shape == (B, T)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert bool((fast[rmask == 0] == 0).all()) and bool((fast[rmask == 1] < 0).all())


def test_ar_logprobs_definition_by_hand(model):
    """Token t is scored with every later response position masked: check t = 1 against one explicit forward."""
    pids, _, rids, _ = _batch(1, 3, 4, 7)
    lp = ar_logprobs(model, pids, rids, MASK)
    x = torch.cat([pids, rids], 1).clone()
    x[0, 3 + 1:] = MASK
    want = full_logits(model, x)[0, 4].log_softmax(-1)[rids[0, 1]]
    assert lp[0, 1].item() == pytest.approx(want.item(), abs=1e-6)
    # a left-padded row gives the unpadded row's log-probs
    padded = torch.cat([torch.full((1, 2), TOK.pad_token_id), pids], 1)
    pm = torch.tensor([[0, 0, 1, 1, 1]])
    assert torch.allclose(ar_logprobs(model, padded, rids, MASK, prompt_mask=pm), lp, atol=1e-5)


def test_ar_logprobs_gradients_match_loop(model):
    pids, pmask, rids, rmask = _batch(2, 4, 5, 3)
    params = list(model.parameters())
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        fast = ar_logprobs(model, pids, rids, MASK, chunk_size=3, prompt_mask=pmask, response_mask=rmask)
        g_fast = torch.autograd.grad(fast.sum(), params)
        slow = ar_logprobs_loop(model, pids, rids, MASK, prompt_mask=pmask, response_mask=rmask)
        g_slow = torch.autograd.grad(slow.sum(), params)
    assert fast.requires_grad
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, atol=1e-5)
    assert any(float(a.abs().sum()) > 0 for a in g_fast)


def test_ar_logprobs_bad_input(model):
    with pytest.raises(ConfigError, match="response_ids"):
        ar_logprobs(model, torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long), MASK)
    with pytest.raises(ConfigError, match="response_mask"):
        ar_logprobs(model, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), MASK,
                    response_mask=torch.ones(1, 2))
    with pytest.raises(ConfigError, match="chunk_size"):
        ar_logprobs(model, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), MASK,
                    chunk_size=0)
    empty = ar_logprobs(model, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long), MASK,
                        response_mask=torch.zeros(1, 2))
    assert empty.tolist() == [[0.0, 0.0]]


def test_estimators_registry(model):
    pids, pmask, rids, rmask = _batch(2, 3, 4, 5)
    exact = ESTIMATORS["exact"](model, pids, rids, MASK, prompt_mask=pmask, response_mask=rmask)
    mf = ESTIMATORS["mean_field"](model, pids, rids, MASK, prompt_mask=pmask, response_mask=rmask)
    # position 0 is scored on the same input by both (the whole response masked)
    assert torch.allclose(mf[:, 0], exact[:, 0], atol=1e-5)
    rnd = ESTIMATORS["random_mask"](model, pids, rids, MASK, prompt_mask=pmask, response_mask=rmask,
                                    num_draws=3, generator=torch.Generator().manual_seed(0))
    assert rnd.shape == exact.shape and bool((rnd[rmask == 0] == 0).all())
    with pytest.raises(Exception, match="valid names"):
        ESTIMATORS["nope"]


def test_build_organism_caches_and_learns(tmp_path):
    task = TinyAdd()
    lm = build_diffusion_organism(tmp_path / "org", task, TOK, steps=60, seed=0, gen_length=3,
                                  cfg=TinyDiffusionConfig(hidden_size=32, intermediate_size=64))
    assert lm.meta["final_loss"] < 2.0  # from ~log(V)=3.9 at init
    stamp = (tmp_path / "org" / "model.safetensors").stat().st_mtime_ns
    again = build_diffusion_organism(tmp_path / "org", task, TOK, steps=60, seed=0, gen_length=3,
                                     cfg=TinyDiffusionConfig(hidden_size=32, intermediate_size=64))
    assert (tmp_path / "org" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again.meta["recipe"]["steps"] == 60


class PlainMaskedLM(torch.nn.Module):
    """Any module whose forward(input_ids) returns .logits (no head adapter, no position_ids): the LLaDA path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return type("O", (), {"logits": self.inner(input_ids=input_ids, attention_mask=attention_mask).logits})()


def test_any_module_with_logits_plugs_in(model):
    from lengthrl.dllm.forward import find_head

    plain = PlainMaskedLM(model)
    assert find_head(plain) is None and find_head(model) is not None
    pids, _, rids, rmask = _batch(2, 4, 5, 11)
    got = ar_logprobs(plain, pids, rids, MASK, chunk_size=3, response_mask=rmask)
    want = ar_logprobs(model, pids, rids, MASK, response_mask=rmask)
    assert torch.allclose(got, want, atol=1e-5)


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward while `fn` runs."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_checkpointed_chunks_keep_little_for_backward(model):
    pids, _, rids, _ = _batch(4, 6, 8, 2)
    for p in model.parameters():
        p.requires_grad_(True)
    with torch.enable_grad():
        full = _saved_bytes(lambda: ar_logprobs(model, pids, rids, MASK, chunk_size=4, use_checkpoint=False))
        ckpt = _saved_bytes(lambda: ar_logprobs(model, pids, rids, MASK, chunk_size=4, use_checkpoint=True))
        loop = _saved_bytes(lambda: ar_logprobs_loop(model, pids, rids, MASK))
    assert ckpt * 10 < full and ckpt * 10 < loop  # activations of the 8 chunks are not held
