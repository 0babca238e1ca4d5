"""Non-finite values never reach the weights: NaN advantages, a NaN reward term and inf logits (injected with
hooks) make the trainer skip the update and count it; after max_bad_steps in a row the run stops with a
message naming the step and the term; an isolated bad step is skipped and the run goes on."""

import pytest
import torch

import lengthrl.train.loop as loop
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, TrainingStopped


def trainer(micro_dir, out, **kw):
    base = dict(model=micro_dir, task="arith_chain", train_prompts=16, eval_prompts=0, prompts_per_step=2,
                group_size=4, max_new_tokens=8, steps=4, checkpoint_every=0, sample_every=0, log_every=0,
                lr=1e-2, max_bad_steps=2, advantage="dr_grpo",
                rollout_engine="hf")  # faults are injected by forward hooks on the transformers modules
    return Trainer(build_config(extra=base | kw), out, progress=False)


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


class Wrapped:
    """A composite reward with its output changed by `edit(total, terms) -> (total, terms)`."""

    def __init__(self, inner, edit):
        self.inner, self.edit, self.terms = inner, edit, inner.terms

    def __call__(self, lengths, correct, g, **kw):
        return self.edit(*self.inner(lengths, correct, g, **kw))

    def state_dict(self):
        return self.inner.state_dict()


def varied_rewards(tr):
    """Rewards that vary inside every group (so a real update changes the weights)."""

    def edit(total, terms):
        total = torch.arange(len(total), dtype=torch.float32) % 2
        return total, {**terms, "correct": total.clone()}

    tr.reward = Wrapped(tr.reward, edit)


def test_nan_advantages_skip_every_update_then_stop_naming_step_and_term(micro_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "compute_advantages", lambda name, r, g, **hp: torch.full_like(r, float("nan")))
    tr = trainer(micro_dir, tmp_path)
    w0 = flat(tr.model)
    with pytest.raises(TrainingStopped, match=r"2 consecutive steps .*step 2: advantages \(dr_grpo\)"):
        tr.run()
    rows = tr.metrics.rows()
    assert [r["skipped_updates"] for r in rows] == [1, 1] and [r["bad_steps"] for r in rows] == [1, 2]
    assert all(r["optimizer_steps"] == 0 and r["nonfinite"].startswith("advantages") for r in rows)
    assert torch.equal(flat(tr.model), w0)  # no update reached the weights
    assert (tmp_path / "checkpoints" / "step_000002").is_dir()  # the last good state is saved


def test_nan_reward_term_is_named(micro_dir, tmp_path):
    tr = trainer(micro_dir, tmp_path)

    def edit(total, terms):
        bad = terms["correct"].clone()
        bad[3] = float("nan")
        return total + bad, {**terms, "correct": bad}

    tr.reward = Wrapped(tr.reward, edit)
    w0 = flat(tr.model)
    with pytest.raises(TrainingStopped, match=r"step 2: reward term 'correct' \(response 3\)"):
        tr.run()
    assert torch.equal(flat(tr.model), w0)


def test_inf_logits_in_the_update_skip_it_and_weights_stay_finite(micro_dir, tmp_path):
    tr = trainer(micro_dir, tmp_path)
    varied_rewards(tr)

    def inf_logits(module, inputs, output):  # only in the update's forward (model.train()), not in rollouts
        return output.masked_fill(torch.ones_like(output, dtype=torch.bool), float("inf")) if module.training \
            else output

    h = tr.model.lm_head.register_forward_hook(inf_logits)
    w0 = flat(tr.model)
    with pytest.raises(TrainingStopped, match=r"step 2: loss;"):
        tr.run()
    h.remove()
    assert torch.equal(flat(tr.model), w0) and torch.isfinite(flat(tr.model)).all()
    assert all(r["nonfinite"] == "loss" for r in tr.metrics.rows())


def test_one_bad_step_is_skipped_and_the_run_goes_on(micro_dir, tmp_path, monkeypatch):
    real = loop.compute_advantages
    calls = []

    def nan_at_step_2(name, r, g, **hp):
        calls.append(1)
        a = real(name, r, g, **hp)
        return torch.full_like(a, float("nan")) if len(calls) == 2 else a

    monkeypatch.setattr(loop, "compute_advantages", nan_at_step_2)
    tr = trainer(micro_dir, tmp_path, max_bad_steps=2)
    varied_rewards(tr)
    w0 = flat(tr.model)
    rows = tr.run()
    assert [r["skipped_updates"] for r in rows] == [0, 1, 0, 0]
    assert [r["bad_steps"] for r in rows] == [0, 1, 0, 0]  # the count resets after a good update
    assert [r["optimizer_steps"] for r in rows] == [1, 0, 1, 1]
    w = flat(tr.model)
    assert torch.isfinite(w).all() and not torch.equal(w, w0)
