"""JustGRPO end to end on a micro model (with a test-local GRPO loss / advantage when the project's are absent)."""

from types import SimpleNamespace

import pytest
import torch

import lengthrl.advantages
import lengthrl.objectives
from lengthrl.dllm.justgrpo import JustGRPOConfig, justgrpo_train
from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, tiny_diffusion_model
from lengthrl.dllm.rollout import DiffusionPolicy
from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample, Score, Task

TOK = char_tokenizer()


def _grpo_advantages(name, rewards, group_size, eps=1e-6):
    g = rewards.view(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)).view(-1)


def _grpo_loss(name, logp, old_logp, advantages, mask, clip_low=0.2, clip_high=0.2):
    ratio = (logp - old_logp).exp()
    a = advantages[:, None]
    term = torch.minimum(ratio * a, ratio.clamp(1 - clip_low, 1 + clip_high) * a)
    per_seq = (term * mask).sum(1) / mask.sum(1).clamp(min=1)
    return SimpleNamespace(loss=-per_seq.mean(), metrics={})


@pytest.fixture(autouse=True)
def grpo_pieces(monkeypatch):
    """Use the project's policy_loss / compute_advantages when present; a local GRPO otherwise."""
    if not hasattr(lengthrl.objectives, "policy_loss"):
        monkeypatch.setattr(lengthrl.objectives, "policy_loss", _grpo_loss, raising=False)
    if not hasattr(lengthrl.advantages, "compute_advantages"):
        monkeypatch.setattr(lengthrl.advantages, "compute_advantages", _grpo_advantages, raising=False)


class StartsWithSeven(Task):
    """Correct when the response starts with "7": learnable from a random init in a few steps."""

    name = "starts_with_7"

    def samples(self, split="train", n=None, seed=0):
        return [Sample(id=str(i), prompt=f"{i}=", answer="7") for i in range(10)]

    def score(self, sample, response):
        ok = response.startswith("7")
        return Score(correct=ok, reward=float(ok))


def test_justgrpo_steps_end_to_end():
    model = tiny_diffusion_model(TOK, TinyDiffusionConfig(hidden_size=32, intermediate_size=64), seed=0)
    with torch.no_grad():  # make "7" a plausible first token so some of each group is right
        model.cls.predictions.bias[TOK.convert_tokens_to_ids("7")] += 2.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    policy = DiffusionPolicy.from_tokenizer(model, TOK, gen_length=3)
    cfg = JustGRPOConfig(steps=12, prompts_per_step=4, group_size=8, lr=3e-3, seed=0)
    hist = justgrpo_train(policy, TOK, StartsWithSeven(), cfg)
    assert len(hist) == 12
    for h in hist:
        assert torch.isfinite(torch.tensor([h["loss"], h["grad_norm"]])).all()
        assert h["rollout_logp_gap"] < 1e-4  # rollout log-probs = exact recomputation (ratio exactly 1)
        assert -1.0 <= h["reward"] <= 1.0
    changed = sum(float((model.state_dict()[k] - v).abs().sum()) for k, v in before.items())
    assert changed > 0
    first = sum(h["accuracy"] for h in hist[:3]) / 3
    last = sum(h["accuracy"] for h in hist[-3:]) / 3
    assert last > first  # the reward rises on this easy task


def test_config_errors():
    with pytest.raises(ConfigError, match="group_size"):
        JustGRPOConfig(group_size=1)
    with pytest.raises(ConfigError, match="lr"):
        JustGRPOConfig(lr=0)
