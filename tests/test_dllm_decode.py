"""AR-order rollouts, the trainer's diffusion log-prob function on them, and LLaDA parallel decoding."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.dllm.adapter import DiffusionLogprobs
from lengthrl.dllm.logprobs import ar_logprobs
from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, tiny_diffusion_model
from lengthrl.dllm.parallel import generate_parallel, num_transfer_tokens
from lengthrl.dllm.rollout import finish, generate_ar
from lengthrl.errors import ConfigError, UnknownNameError
from lengthrl.rollout import SamplingParams, left_pad, sampling_logprobs
from lengthrl.tasks.base import Sample
from lengthrl.train.prompts import encode_prompts

TOK = char_tokenizer()
IDS = dict(mask_token_id=TOK.mask_token_id, eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id)


def eos_biased_model(seed):
    """A random tiny model whose EOS logit is raised, so responses of varied length end in EOS."""
    m = tiny_diffusion_model(TOK, TinyDiffusionConfig(hidden_size=32, intermediate_size=64), seed=seed)
    with torch.no_grad():
        m.cls.predictions.bias[TOK.eos_token_id] += 2.5
    return m


@pytest.fixture(scope="module")
def model():
    return eos_biased_model(3)


@pytest.fixture(scope="module")
def prompts():
    samples = [Sample(id=p, prompt=p, answer="") for p in ["1+2=", "13+4=", "7="]]
    return left_pad(encode_prompts(TOK, samples, None), TOK.pad_token_id)


def top_p_kept(logits, top_p):
    """The tokens the rollout sampler may draw under `top_p` (temperature 1)."""
    return sampling_logprobs(logits, SamplingParams(top_p=top_p)).isfinite()


def test_rollout_fields_and_logp_match_exact_scoring(model, prompts):
    pids, pmask = prompts
    batch = generate_ar(model, pids, pmask, gen_length=6, n=4, generator=torch.Generator().manual_seed(0), **IDS)
    score = DiffusionLogprobs(TOK.mask_token_id, TOK.pad_token_id, gen_length=6)
    B = 12
    assert batch.response_ids.shape == (B, 6) and batch.prompt_ids.shape == (B, pids.shape[1])
    assert batch.group_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert batch.response_mask.sum(1).tolist() == batch.lengths.tolist()
    eos = TOK.eos_token_id
    for b in range(B):
        n = int(batch.lengths[b])
        row = batch.response_ids[b].tolist()
        assert eos not in row[: n - 1]
        assert (row[n - 1] == eos) != bool(batch.truncated[b])
        assert all(v == TOK.pad_token_id for v in row[n:])
    assert len(set(batch.lengths.tolist())) > 1  # varied lengths exercise the masking
    again = score(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    assert torch.allclose(again, batch.logp, atol=1e-5)
    # the engine trims trailing padding: the log-prob function still scores on the generation canvas
    T = int(batch.lengths.max())
    trimmed = score(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids[:, :T],
                    batch.response_mask[:, :T])
    assert torch.allclose(trimmed, batch.logp[:, :T], atol=1e-5)


def test_rollout_temperature_scoring(model, prompts):
    pids, pmask = prompts
    batch = generate_ar(model, pids, pmask, gen_length=5, n=2, temperature=0.7,
                        generator=torch.Generator().manual_seed(1), **IDS)
    score = DiffusionLogprobs(TOK.mask_token_id, TOK.pad_token_id, gen_length=5)
    again = score(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask,
                  temperature=0.7)
    assert torch.allclose(again, batch.logp, atol=1e-5)


def test_top_p_keeps_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = top_p_kept(logits, 0.7)[0].tolist()
    assert kept == [True, True, False, False]
    assert top_p_kept(logits, 0.5)[0].tolist() == [True, False, False, False]
    assert top_p_kept(logits, 1.0).all()


def test_top_p_sampling_never_leaves_nucleus(model, prompts):
    pids, pmask = prompts
    batch = generate_ar(model, pids, pmask, gen_length=1, n=50, temperature=1.0, top_p=0.3,
                        generator=torch.Generator().manual_seed(0), **IDS)
    x = torch.cat([batch.prompt_ids, torch.full((150, 1), TOK.mask_token_id)], 1)
    attn = torch.cat([batch.prompt_mask, torch.ones(150, 1, dtype=torch.long)], 1)
    from lengthrl.dllm.forward import full_logits

    allowed = top_p_kept(full_logits(model, x, attn)[:, -1], 0.3)
    assert bool(allowed[torch.arange(150), batch.response_ids[:, 0]].all())


def test_finish_cuts_after_first_eos():
    e, p = TOK.eos_token_id, TOK.pad_token_id
    ids, mask, lengths, trunc = finish(torch.tensor([[5, e, 6, e], [5, 6, 7, 8]]), e, p)
    assert ids.tolist() == [[5, e, p, p], [5, 6, 7, 8]]
    assert lengths.tolist() == [2, 4] and trunc.tolist() == [False, True] and mask.tolist()[0] == [1, 1, 0, 0]


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 50), gen=st.integers(1, 6))
def test_block1_parallel_equals_ar_greedy(prompts, seed, gen):
    m = eos_biased_model(seed)
    pids, pmask = prompts
    ar = generate_ar(m, pids, pmask, gen_length=gen, temperature=0.0, **IDS)
    par = generate_parallel(m, pids, gen, steps=gen, block_length=1, prompt_mask=pmask, **IDS)
    assert par.response_ids.tolist() == ar.response_ids.tolist()
    assert par.lengths.tolist() == ar.lengths.tolist()
    assert par.forwards == gen and par.forwards_per_token == 1.0


def test_parallel_low_confidence_commits_most_confident_first(model, prompts):
    pids, pmask = prompts
    res = generate_parallel(model, pids, 8, steps=2, block_length=8, prompt_mask=pmask, **IDS)
    assert res.forwards == 2 and res.forwards_per_token == 0.25
    assert not bool((res.canvas == TOK.mask_token_id).any())
    # one step on one block: the 4 committed positions are the 4 highest-confidence ones
    from lengthrl.dllm.forward import full_logits

    P = pids.shape[1]
    x = torch.cat([pids, torch.full((3, 8), TOK.mask_token_id)], 1)
    attn = torch.cat([pmask, torch.ones(3, 8, dtype=torch.long)], 1)
    probs = full_logits(model, x, attn)[:, P:].double().softmax(-1)
    top = probs.max(-1).values.topk(4, dim=-1).indices.sort(-1).values
    one = generate_parallel(model, pids, 8, steps=8, block_length=8, prompt_mask=pmask, **IDS)
    assert one.forwards == 8
    first = generate_parallel(model, pids, 8, steps=2, block_length=8, prompt_mask=pmask, **IDS)
    # after the first of two steps the top-4 positions hold their argmax tokens; they are never changed later
    for b in range(3):
        pos = top[b]
        assert first.canvas[b, pos].tolist() == probs[b, pos].argmax(-1).tolist()


def test_parallel_random_remasking_and_errors(model, prompts):
    pids, pmask = prompts
    res = generate_parallel(model, pids, 6, steps=3, block_length=2, remasking="random", temperature=1.0,
                            prompt_mask=pmask, generator=torch.Generator().manual_seed(0), **IDS)
    assert res.forwards == 3 and not bool((res.canvas == TOK.mask_token_id).any())
    with pytest.raises(UnknownNameError, match="low_confidence"):
        generate_parallel(model, pids, 6, 3, 2, remasking="nope", **IDS)
    with pytest.raises(ConfigError, match="block_length"):
        generate_parallel(model, pids, 6, 3, 4, **IDS)
    with pytest.raises(ConfigError, match="steps"):
        generate_parallel(model, pids, 6, 4, 2, **IDS)
    with pytest.raises(ConfigError, match="temperature"):
        generate_ar(model, pids, pmask, gen_length=3, temperature=-1, **IDS)
    with pytest.raises(ConfigError, match="top_p"):
        generate_ar(model, pids, pmask, gen_length=3, top_p=0, **IDS)


def test_num_transfer_tokens_spreads_evenly():
    masked = torch.tensor([[1] * 7 + [0], [1] * 8])
    assert num_transfer_tokens(masked.bool(), 3).tolist() == [[3, 2, 2], [3, 3, 2]]
