"""The controller inside the trainer, on a micro random model: its metrics per step, the penalty it adds to the
rewards, the multiplier it keeps in the checkpoint, and a resumed run that continues it exactly."""

import pytest
import torch

from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, train


def cfg_for(model_dir, **kw):
    base = dict(model=model_dir, task="arith_chain", train_prompts=64, eval_prompts=0, prompts_per_step=2,
                group_size=4, max_new_tokens=12, steps=3, checkpoint_every=0, sample_every=0, log_every=0,
                lr=1e-3, length_budget=4, lagrange_lr=0.5)
    return build_config(extra=base | kw)


def test_metrics_and_penalty_each_step(micro_dir, tmp_path, device):
    """A random model writes ~12 tokens against a budget of 4: the multiplier rises every step by
    lr * (mean length / 4 - 1), exactly as the logged violation says."""
    tr = train(cfg_for(micro_dir, device=device), tmp_path, progress=False, evaluate=False)
    rows = tr.metrics.rows()
    lam = 0.0
    for r in rows:
        assert r["lagrange/lambda_used"] == pytest.approx(lam)
        assert r["lagrange/violation"] == pytest.approx(r["len/mean"] / 4 - 1, abs=1e-5)
        lam = max(0.0, lam + 0.5 * r["lagrange/violation"])
        assert r["lagrange/lambda"] == pytest.approx(lam)
        # the penalty term's batch mean: -lambda_used * mean(L/B - 1)
        assert r["reward/lagrange"] == pytest.approx(-r["lagrange/lambda_used"] * r["lagrange/violation"], abs=1e-5)
    assert rows[-1]["lagrange/lambda"] > rows[0]["lagrange/lambda"] > 0
    state = torch.load(sorted((tmp_path / "checkpoints").iterdir())[-1] / "trainer_state.pt", weights_only=False)
    assert state["lagrange"]["lambda"] == pytest.approx(rows[-1]["lagrange/lambda"])


def test_resume_restores_the_multiplier(micro_dir, tmp_path):
    kw = dict(steps=2, checkpoint_every=1, keep_checkpoints=3)
    full = train(cfg_for(micro_dir, **kw), tmp_path / "full", progress=False, evaluate=False)
    part = Trainer(cfg_for(micro_dir, **kw), tmp_path / "part", progress=False)
    m = part.train_step()
    part.step += 1
    part.metrics.write(m)
    part.save()
    lam_at_1 = part.lagrange.lam
    part.lagrange.lam = 123.0  # state after the checkpoint is lost
    resumed = Trainer(cfg_for(micro_dir, **kw), tmp_path / "part", resume=True, progress=False)
    assert resumed.lagrange.lam == lam_at_1 > 0
    resumed.run()
    a, b = full.metrics.rows(), resumed.metrics.rows()
    assert [r["lagrange/lambda"] for r in a] == [r["lagrange/lambda"] for r in b]


def test_controller_off_adds_nothing(micro_dir, tmp_path):
    tr = train(cfg_for(micro_dir, length_budget=None, steps=1), tmp_path, progress=False, evaluate=False)
    assert tr.lagrange is None
    assert not any(k.startswith("lagrange/") or k == "reward/lagrange" for k in tr.metrics.rows()[0])


def test_composes_with_another_length_reward_and_loss(micro_dir, tmp_path):
    """With LUSPO and a DAPO overlong term, the step's mean reward is the sum of the terms' means plus the
    controller's term: the shaping is added on top of the composite reward."""
    reward = [{"name": "correct"}, {"name": "dapo_overlong", "weight": 0.3, "max_len": 12, "cache_len": 4}]
    tr = train(cfg_for(micro_dir, steps=2, loss="luspo", reward=reward, lagrange_init=0.5), tmp_path,
               progress=False, evaluate=False)
    for r in tr.metrics.rows():
        assert r["lagrange/lambda_used"] > 0
        total = r["reward/correct"] + 0.3 * r["reward/dapo_overlong"] + r["reward/lagrange"]
        assert r["reward/mean"] == pytest.approx(total, abs=1e-5)
        assert r["reward/lagrange"] < 0  # over budget: the term is a penalty
