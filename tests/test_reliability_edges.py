"""Edge cases through the trainer on a micro model: empty responses (EOS first) with pad == eos, every
response truncated (with and without overlong filtering), groups of size 1, all rewards equal, and a batch
where dynamic sampling keeps nothing. Each run must finish with finite weights and sane metrics."""

import pytest
import torch

from lengthrl.models import save_tiny_random_model
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer
from runkit import MICRO


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("m")
    return {"qwen": str(save_tiny_random_model(root / "qwen", arch="qwen2", seed=0, **MICRO)),
            "llama_pad_eos": str(save_tiny_random_model(root / "llama", arch="llama", pad_is_eos=True, **MICRO))}


def trainer(model, out, **kw):
    base = dict(model=model, task="arith_chain", train_prompts=16, eval_prompts=0, prompts_per_step=2,
                group_size=4, max_new_tokens=6, steps=2, checkpoint_every=0, sample_every=1, log_every=0, lr=1e-2,
                rollout_engine="hf")  # faults are injected by forward hooks on the transformers modules
    return Trainer(build_config(extra=base | kw), out, progress=False)


def force_eos(tr, logit: float):
    """In rollouts only (eval mode), set the EOS logit to `logit` (+inf: EOS first; -inf: never EOS)."""
    eos = tr.tok.eos_token_id

    def hook(module, inputs, out):
        if module.training:
            return out
        out = out.clone()
        out[..., eos] = logit
        return out

    return tr.model.lm_head.register_forward_hook(hook)


def flat(model):
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_empty_responses_with_pad_equal_to_eos(models, tmp_path):
    tr = trainer(models["llama_pad_eos"], tmp_path)
    assert tr.tok.pad_token_id == tr.tok.eos_token_id
    force_eos(tr, 1e4)
    rows = tr.run()
    for r in rows:  # every response is just EOS: length 1 (EOS counts), empty text, all wrong, all equal
        assert r["len/max"] == r["len/min"] == 1 and r["acc"] == 0 and r["trunc_rate"] == 0
        assert r["zero_var_groups"] == 1 and r["adv_len_corr"] == 0 and r["bad_steps"] == 0
    assert torch.isfinite(flat(tr.model)).all()


@pytest.mark.parametrize("overlong_filter", [False, True])
def test_every_response_truncated(models, tmp_path, overlong_filter):
    tr = trainer(models["qwen"], tmp_path, overlong_filter=overlong_filter, reward=[
        {"name": "dapo_overlong", "max_len": 6, "cache_len": 2}, {"name": "correct"}])
    force_eos(tr, float("-inf"))
    w0 = flat(tr.model)
    rows = tr.run()
    assert all(r["trunc_rate"] == 1 and r["len/min"] == 6 for r in rows)
    assert all(r["bad_steps"] == 0 for r in rows)
    if overlong_filter:  # every response masked out of the loss: no update, not an error
        assert all(r["optimizer_steps"] == 0 and r["skipped_updates"] == 0 for r in rows)
        assert torch.equal(flat(tr.model), w0)
    else:  # equal lengths and all wrong: equal rewards, zero advantages -> no signal, no optimizer step
        assert all(r["optimizer_steps"] == 0 and r.get("no_signal") == 1 for r in rows)
        assert torch.equal(flat(tr.model), w0)
    assert torch.isfinite(flat(tr.model)).all()


@pytest.mark.parametrize("advantage", ["grpo", "rloo", "batch"])
def test_groups_of_size_one(models, tmp_path, advantage):
    tr = trainer(models["qwen"], tmp_path, group_size=1, prompts_per_step=4, advantage=advantage)
    rows = tr.run()
    assert all(r["zero_var_groups"] == 1 and r["bad_steps"] == 0 for r in rows)
    assert torch.isfinite(flat(tr.model)).all()


def test_dynamic_sampling_keeps_nothing(models, tmp_path):
    tr = trainer(models["qwen"], tmp_path, dynamic_sampling=True)
    force_eos(tr, 1e4)  # every response wrong: every group has equal rewards and is dropped
    w0 = flat(tr.model)
    rows = tr.run()
    assert all(r["kept_groups_frac"] == 0 and r["optimizer_steps"] == 0 and r["bad_steps"] == 0 for r in rows)
    assert torch.equal(flat(tr.model), w0)
    assert [r["step"] for r in rows] == [1, 2] and (tmp_path / "final" / "model.safetensors").is_file()
