"""The lean decoder's KV cache grows by blocks with the running responses: bitwise the same rollouts for any
block size (a block >= max_new_tokens is the former one-buffer-per-call preallocation), and no wider than the
longest running response needs."""

from __future__ import annotations

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.models import load_policy, save_tiny_random_model
from lengthrl.rollout import FastEngine, SamplingParams
from lengthrl.rollout import fast as fast_mod
from runkit import on_device

PROMPTS = ["left to right: 1+2*3\n", "count a in: abca\n", "sort: 93\n", "x"]


@pytest.fixture(scope="module")
def eos_policy(tmp_path_factory):
    """A model whose EOS logit is raised, so responses end at varied lengths (compaction is exercised)."""
    d = save_tiny_random_model(tmp_path_factory.mktemp("eos"), seed=5, hidden_size=32, num_layers=2, num_heads=4,
                               num_kv_heads=2, intermediate_size=64)
    model, tok = load_policy(d)
    head = model.lm_head
    new = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(head.weight)
        new.bias.zero_()
        new.bias[tok.eos_token_id] = 2.5
    model.lm_head = new
    return model, tok


@pytest.mark.parametrize("block", [1, 3, 7])
@pytest.mark.parametrize("frac", [0.0, 0.5])
def test_any_block_gives_bitwise_the_same_rollouts(eos_policy, block, frac, device):
    model, tok = eos_policy
    model = on_device(model, device)
    prompts = [tok(t).input_ids for t in PROMPTS]
    params = SamplingParams(temperature=1.0, max_new_tokens=20, seed=11)
    full = FastEngine(model, tok, compact_frac=frac, cache_block=20).generate(prompts, 4, params)
    got = FastEngine(model, tok, compact_frac=frac, cache_block=block).generate(prompts, 4, params)
    assert len(set(full.lengths.tolist())) > 2  # varied lengths: rows finish and are dropped
    for f in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "logp", "lengths", "truncated",
              "group_index"):
        assert torch.equal(getattr(full, f), getattr(got, f)), f


def test_cache_width_follows_the_longest_running_response(eos_policy, monkeypatch):
    model, tok = eos_policy
    prompts = [tok(t).input_ids for t in PROMPTS]
    P = max(len(p) for p in prompts)
    widths = []
    real = fast_mod._grow_cache

    def spy(cache, width, used):
        widths.append(width)
        return real(cache, width, used)

    monkeypatch.setattr(fast_mod, "_grow_cache", spy)
    b = FastEngine(model, tok, cache_block=4).generate(prompts, 4, SamplingParams(temperature=1.0,
                                                                                  max_new_tokens=40, seed=11))
    longest = int(b.lengths.max())
    assert longest < 40  # every response ended early: a full-width cache would have been P + 40 wide
    assert widths and max(widths) <= P + longest + 4 and widths == sorted(widths)
    with pytest.raises(ConfigError, match="cache_block"):
        FastEngine(model, tok, cache_block=0)
