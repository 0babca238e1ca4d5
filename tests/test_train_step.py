"""The pieces of `Trainer.train_step`: the global/local view of the batch (StepBatch), the update decision (one
pure function, an explicit value), the bad-step count, and the update's forward (`logprob_impl`)."""

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample
from lengthrl.train.batch import StepBatch
from lengthrl.train.config import describe
from lengthrl.train.validate import build_config
from lengthrl.train.decision import Update, UpdateDecision, count_bad_steps, decide_update, skip_metrics
from lengthrl.train.distributed import Dist
from lengthrl.train.policy import uses_lean_forward


def _samples(n):
    return [Sample(f"p{i}", f"prompt {i}", str(i)) for i in range(n)]


def test_step_batch_local_rows_and_global_groups():
    """4 prompts × G=3 over 2 ranks: rank 1 holds prompts [2, 4) = rows [6, 12)."""
    sb = StepBatch(_samples(4), 3, *Dist(rank=1, world_size=2).block(4))
    x = torch.arange(12)
    assert sb.n_rows == 12 and [s.id for s in sb.local_samples] == ["p2", "p3"]
    assert sb.local(x).tolist() == [6, 7, 8, 9, 10, 11]
    assert sb.global_groups(torch.tensor([0, 0, 0, 1, 1, 1])).tolist() == [2, 2, 2, 3, 3, 3]
    keep = torch.tensor([True] * 3 + [False] * 3 + [False] * 3 + [True] * 3)
    assert sb.kept_groups(keep).tolist() == [0, 3]


def test_step_batch_gather_offsets_failure_indices_without_mutating():
    sb = StepBatch(_samples(4), 2, 2, 4)  # one process holding prompts [2, 4): a stand-in for rank 1 of 2
    fails = [{"index": 1, "prompt_id": "p2"}]
    out = sb.gather(["a", "b", "c", "d"], torch.tensor([1, 2, 3, 4]), torch.zeros(4, dtype=torch.bool),
                    [None] * 4, fails)
    assert out.failures == [{"index": 5, "prompt_id": "p2"}] and fails[0]["index"] == 1
    assert out.texts == ["a", "b", "c", "d"] and out.lengths.tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("nonfinite, beta, adv, tokens, kind", [
    ("reward (response 0)", 0.0, [1.0, -1.0], 5.0, Update.SKIP_NONFINITE),
    ("advantages (grpo)", 0.1, [0.0, 0.0], 5.0, Update.SKIP_NONFINITE),  # non-finite first, even with a KL term
    (None, 0.0, [0.0, 0.0], 5.0, Update.SKIP_NO_SIGNAL),
    (None, 0.1, [0.0, 0.0], 5.0, Update.UPDATE),  # the KL term is a signal
    (None, 0.0, [0.5, -0.5], 5.0, Update.UPDATE),
    (None, 0.0, [0.5, -0.5], 0.0, Update.SKIP_EMPTY),  # every token masked out
    (None, 0.0, [], 0.0, Update.SKIP_NO_SIGNAL),  # dynamic sampling kept nothing
])
def test_decide_update(nonfinite, beta, adv, tokens, kind):
    d = decide_update(nonfinite, beta, torch.tensor(adv), tokens)
    assert d.kind is kind
    if kind is Update.SKIP_NONFINITE:
        assert d.reason == nonfinite


def test_skip_metrics_report_the_decision():
    assert skip_metrics(UpdateDecision(Update.SKIP_NONFINITE, "reward (response 2)"), 0.1) == {
        "skipped_updates": 1, "optimizer_steps": 0, "lr": 0.1, "nonfinite": "reward (response 2)"}
    assert skip_metrics(UpdateDecision(Update.SKIP_NO_SIGNAL), 0.1)["no_signal"] == 1
    assert skip_metrics(UpdateDecision(Update.SKIP_EMPTY), 0.1) == {"skipped_updates": 0, "optimizer_steps": 0,
                                                                   "lr": 0.1}


def test_count_bad_steps():
    upd, nf = UpdateDecision(Update.UPDATE), UpdateDecision(Update.SKIP_NONFINITE, "reward (response 0)")
    assert count_bad_steps(1, None, nf, 0, 0, None) == (2, "reward (response 0)")
    assert count_bad_steps(1, "x", upd, 0, 2, "gradient") == (2, "gradient")  # every optimizer step skipped
    assert count_bad_steps(2, "x", upd, 1, 1, "loss") == (0, "x")  # one optimizer step went through
    assert count_bad_steps(2, "x", UpdateDecision(Update.SKIP_NO_SIGNAL), 0, 0, None) == (2, "x")


def test_logprob_impl_is_a_documented_choice(micro_dir):
    base = dict(model=micro_dir)
    assert uses_lean_forward(build_config(extra=base))  # auto with the lean rollout engine: today's behaviour
    assert not uses_lean_forward(build_config(extra=base | {"rollout_engine": "hf"}))
    assert not uses_lean_forward(build_config(extra=base | {"logprob_impl": "model"}))
    assert uses_lean_forward(build_config(extra=base | {"logprob_impl": "lean", "rollout_engine": "hf"}))
    with pytest.raises(ConfigError, match="logprob_impl"):
        build_config(extra=base | {"logprob_impl": "fast"})
    with pytest.raises(ConfigError, match="logprob_impl"):
        build_config(extra={"policy": "diffusion", "logprob_impl": "lean"})
    assert "logprob_impl" in {row[0] for row in describe()}


def test_logprob_impl_lean_refuses_where_the_lean_decoder_cannot_run(micro_dir, tmp_path):
    from lengthrl.train.loop import Trainer

    cfg = build_config(extra=dict(model=micro_dir, task="arith_chain", train_prompts=8, eval_prompts=0,
                                  prompts_per_step=2, group_size=2, max_new_tokens=4, steps=1,
                                  logprob_impl="lean", gradient_checkpointing=True))
    with pytest.raises(ConfigError, match="'logprob_impl'.*gradient checkpointing"):
        Trainer(cfg, tmp_path, progress=False)


def test_logprob_impl_model_and_lean_train_alike(micro_dir, tmp_path, device):
    """The two forwards compute the same log-probs: one step gives the same loss metrics to float tolerance."""
    from lengthrl.train.loop import train

    rows = {}
    for impl in ("model", "lean"):
        cfg = build_config(extra=dict(model=micro_dir, task="arith_chain", train_prompts=8, eval_prompts=0,
                                      prompts_per_step=2, group_size=4, max_new_tokens=8, steps=1,
                                      checkpoint_every=0, sample_every=0, log_every=0, lr=1e-3, beta=0.1,
                                      logprob_impl=impl, device=device))
        rows[impl] = train(cfg, tmp_path / impl, progress=False, evaluate=False).metrics.rows()[0]
    for k in ("loss", "entropy", "kl_ref", "grad_norm"):
        if k in rows["model"]:
            assert rows["lean"][k] == pytest.approx(rows["model"][k], rel=1e-4, abs=1e-6), k


def test_dual_clip_for_a_loss_without_it_is_refused(micro_dir):
    from types import SimpleNamespace

    from lengthrl.train.update import loss_hparams

    with pytest.raises(ConfigError, match="'dual_clip'.*'gspo'"):
        build_config(extra=dict(model=micro_dir, loss="gspo", dual_clip=3.0))
    cfg = SimpleNamespace(loss="gspo", dual_clip=3.0, clip_low=None, clip_high=None, loss_agg_mode=None,
                          max_new_tokens=8, beta=0.0)
    with pytest.raises(ConfigError, match="'dual_clip'.*'gspo'"):
        loss_hparams(cfg)
    assert loss_hparams(build_config(extra=dict(model=micro_dir, loss="grpo", dual_clip=3.0)))["dual_clip"] == 3.0
