"""The trainer end to end on a micro model: every loss runs, accumulation equals one batch, resume equals an
uninterrupted run, a user model directory loads through the same path, config errors name the key."""

import json
from pathlib import Path

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.models import save_tiny_random_model
from lengthrl.objectives import LOSSES
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, train
from lengthrl.train.update import UpdateBatch, make_optimizer, ppo_update
from runkit import MICRO


def cfg_for(model_dir, **kw):
    base = dict(model=model_dir, task="arith_chain", train_prompts=64, eval_prompts=4, prompts_per_step=2,
                group_size=4, max_new_tokens=12, steps=2, checkpoint_every=0, sample_every=1, log_every=0,
                lr=1e-3)
    return build_config(extra=base | kw)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_few_steps_for_every_loss(micro_dir, tmp_path, loss, device):
    tr = train(cfg_for(micro_dir, loss=loss, advantage="dr_grpo", device=device), tmp_path, progress=False,
               evaluate=False)
    rows = tr.metrics.rows()
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["len/max"] <= 12 and 0 <= r["acc"] <= 1 and r["optimizer_steps"] in (0, 1)
        for k in ("len/mean", "len/p90", "trunc_rate", "zero_var_groups", "reward/mean", "step_time_s"):
            assert k in r
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "final" / "config.json").is_file()
    assert (tmp_path / "samples.jsonl").read_text().strip()


def _fixed_batch(tok_vocab=100, B=8, P=3, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    rmask = (torch.arange(T)[None] < lengths[:, None]).long()
    return UpdateBatch(
        prompt_ids=torch.randint(4, tok_vocab, (B, P), generator=g), prompt_mask=torch.ones(B, P, dtype=torch.long),
        response_ids=torch.randint(4, tok_vocab, (B, T), generator=g) * rmask, response_mask=rmask,
        loss_mask=rmask.float(), advantages=torch.randn(B, generator=g), group_index=torch.arange(B) // 4,
    )


@pytest.mark.parametrize("loss", list(LOSSES))
def test_gradient_accumulation_equals_one_batch(micro_dir, loss, device):
    """One optimizer step with micro-batches of 1, 3 and the whole batch gives the same weights (SGD, one step,
    so the weight change is proportional to the gradient). bnpo averages per-micro-batch means by definition."""
    from lengthrl.models import load_policy

    results = []
    for micro in (0, 3, 1):
        model, _ = load_policy(micro_dir, device=device)
        cfg = cfg_for(micro_dir, loss=loss, micro_batch_size=micro, grad_clip=0.0, lr=0.1)
        opt, sched = make_optimizer(model, cfg, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        batch = _fixed_batch(model.config.vocab_size).to(device)
        batch.old_logp = None
        ppo_update(model, opt, sched, batch, cfg, torch.Generator().manual_seed(0))
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]).cpu())
    if loss == "bnpo":
        assert not torch.allclose(results[0], results[2], atol=1e-7)  # per-micro-batch normalisation differs
    else:
        assert torch.allclose(results[0], results[1], atol=2e-6) and torch.allclose(results[0], results[2], atol=2e-6)


def test_gradient_checkpointing_recomputes_and_keeps_the_gradient(micro_dir, tmp_path):
    """With gradient_checkpointing the decoder layers run again in the backward pass (counted by a pre-hook:
    2 calls per micro-batch instead of 1) and the update's gradient is the same (1e-6)."""
    from lengthrl.models import load_policy
    from lengthrl.train.loop import enable_gradient_checkpointing

    grads, calls = [], []
    for gc in (False, True):
        model, _ = load_policy(micro_dir)
        if gc:
            enable_gradient_checkpointing(model)
        n = [0]
        # a pre-hook: the recomputation stops once it has what the backward needs, before any forward hook
        model.model.layers[0].register_forward_pre_hook(lambda *a: n.__setitem__(0, n[0] + 1))
        cfg = cfg_for(micro_dir, loss="luspo", micro_batch_size=4, grad_clip=0.0, gradient_checkpointing=gc)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        batch = _fixed_batch(model.config.vocab_size)
        batch.old_logp = None
        ppo_update(model, opt, sched, batch, cfg, torch.Generator().manual_seed(0))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        calls.append(n[0])
    assert calls == [2, 4]  # 2 micro-batches; with checkpointing each forward runs again in the backward
    assert float((grads[0] - grads[1]).abs().max()) < 1e-6 and float(grads[0].abs().max()) > 1e-4
    tr = train(cfg_for(micro_dir, gradient_checkpointing=True), tmp_path, progress=False, evaluate=False)
    assert tr.model.is_gradient_checkpointing and tr.metrics.rows()[-1]["step"] == 2


@pytest.mark.parametrize("extra", [{}, {"beta": 0.1}, {"checkpoint_format": "sharded"}],
                         ids=["plain", "kl-reference", "sharded-checkpoint"])
def test_resume_equals_an_uninterrupted_run(micro_dir, tmp_path, extra, device):
    """Bitwise: metrics and weights of a run killed after its step-2 checkpoint and resumed equal an
    uninterrupted run's (with a KL reference: the reference stays the initial model, not the checkpoint)."""
    kw = dict(steps=4, checkpoint_every=2, keep_checkpoints=3, lr=1e-2, max_new_tokens=24, prompts_per_step=4,
              # a length reward, so the weights move (the random model is never correct)
              reward=[{"name": "correct"}, {"name": "kimi", "weight": 1.0}], device=device) | extra
    full = train(cfg_for(micro_dir, **kw), tmp_path / "full", progress=False, evaluate=False)
    part = Trainer(cfg_for(micro_dir, **kw), tmp_path / "part", progress=False)
    det = part._collapse_detector()
    for _ in range(2):  # two steps as run() takes them, a checkpoint at step 2, then "killed" in step 3
        m = part.train_step()
        part.step += 1
        part._watch_collapse(det, m)
        part.metrics.write(m)
    part.save()
    part.metrics.write(part.train_step() | {"step": 3})  # the lost step: written, never checkpointed
    resumed = train(cfg_for(micro_dir, **kw), tmp_path / "part", resume=True, progress=False, evaluate=False)
    a, b = full.metrics.rows(), resumed.metrics.rows()
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    drop = {"time_s", "step_time_s", "rollout_time_s", "tokens_per_s"}
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k not in drop} == {k: v for k, v in rb.items() if k not in drop}
    assert a[1]["optimizer_steps"] > 0 and (not extra.get("beta") or a[-1]["kl_ref"] > 0)
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("fmt", ["full", "sharded"])
def test_checkpoint_before_the_first_step(micro_dir, tmp_path, fmt):
    """A checkpoint taken before any optimizer step leaves the optimizer untouched (reading an empty optimizer
    through torch.distributed.checkpoint would give it a step and zero moments) and resumes bitwise."""
    cfg = cfg_for(micro_dir, steps=2, lr=1e-2, max_new_tokens=24, prompts_per_step=4, checkpoint_format=fmt,
                  reward=[{"name": "correct"}, {"name": "kimi", "weight": 1.0}])
    part = Trainer(cfg, tmp_path / "part", progress=False)
    part.save()
    assert not part.opt.state
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False, evaluate=False)
    full = train(cfg, tmp_path / "full", progress=False, evaluate=False)
    drop = {"time_s", "step_time_s", "rollout_time_s", "tokens_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in full.metrics.rows()] == \
        [{k: v for k, v in r.items() if k not in drop} for r in resumed.metrics.rows()]
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), resumed.model.parameters()))


def test_corrupt_checkpoint_falls_back_to_the_previous(micro_dir, tmp_path):
    tr = train(cfg_for(micro_dir, steps=4, checkpoint_every=2, keep_checkpoints=3), tmp_path, progress=False,
               evaluate=False)
    last = sorted((tmp_path / "checkpoints").iterdir())[-1]
    (last / "trainer_state.pt").write_bytes(b"truncated")
    from lengthrl.train.checkpoint import latest_valid

    assert latest_valid(tmp_path).name == "step_000002"


def test_user_model_directory_llama_pad_is_eos(tmp_path):
    d = save_tiny_random_model(tmp_path / "llama", arch="llama", pad_is_eos=True, **MICRO)
    tr = train(cfg_for(str(d), loss="luspo"), tmp_path / "run", progress=False, evaluate=False)
    # with pad == eos, a response that ends with EOS still counts the EOS in its length
    assert all(r["len/min"] >= 1 for r in tr.metrics.rows())
    cfgj = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfgj["loss"] == "luspo" and Path(cfgj["model_dir"]) == d


@pytest.mark.parametrize(
    "extra,match",
    [
        ({"los": "grpo"}, "unknown config key 'los'; did you mean 'loss'"),
        ({"loss": "ppo"}, "config key 'loss': unknown loss 'ppo'; valid: grpo"),
        ({"group_size": "8"}, "config key 'group_size': expected an integer"),
        ({"group_size": 0}, "config key 'group_size': must be >= 1"),
        ({"top_p": 1.5}, "config key 'top_p'"),
        ({"reward": [{"name": "dler", "max_lenn": 8}]}, "config key 'reward'.*max_lenn"),
        ({"adv_eps": 1e-4, "advantage": "rloo"}, "config key 'adv_eps'"),
    ],
)
def test_config_errors_name_the_key(extra, match):
    with pytest.raises(ConfigError, match=match):
        build_config(extra=extra)


def test_config_file_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('loss = "luspo"\nsteps = 3\n[meta]\npaper = "x"\n[[reward]]\nname = "correct"\n')
    cfg = build_config(p, ["steps=5", "task_args.max_steps=3", "clip_high=0.3"])
    assert cfg.loss == "luspo" and cfg.steps == 5 and cfg.task_args == {"max_steps": 3} and cfg.clip_high == 0.3
    with pytest.raises(ConfigError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("loss = ")
        build_config(tmp_path / "bad.toml")


def test_every_recipe_in_configs_validates_and_cites_its_paper():
    import tomllib

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.toml"))
    assert {f.stem for f in files} >= {"grpo", "dr_grpo", "dapo", "gspo", "luspo", "cispo", "dler", "grpo_lambda",
                                       "hapo", "l1_exact", "kimi"}
    for f in files:
        meta = tomllib.loads(f.read_text())["meta"]
        assert "arXiv" in meta["paper"] and meta["scaled_down"], f
        build_config(f)


def test_dler_truncated_responses_get_zero(micro_dir, tmp_path):
    """With generation capped at max_new_tokens = DLER's cap, a cut-off response has length == cap; it must
    still get 0 (the sampler's truncated flag reaches the reward)."""
    from lengthrl.rewards import CompositeReward
    from lengthrl.tasks import get_task
    from lengthrl.train.scoring import score_batch

    task = get_task("arith_chain")
    s = task.samples("train", 1)
    reward = CompositeReward.from_config([{"name": "dler", "max_len": 12}])
    texts = [f"<answer>{s[0].answer}</answer>"] * 2
    out = score_batch(task, reward, s, texts, torch.tensor([12, 12]), 2, truncated=torch.tensor([False, True]))
    assert out.rewards.tolist() == [1.0, 0.0]


def test_no_optimizer_step_without_signal(micro_dir, tmp_path, device):
    """All rewards equal (a constant reward term) -> zero advantages -> no AdamW step: the weights stay put."""
    from lengthrl.models import load_policy

    cfg = cfg_for(micro_dir, reward=[{"name": "format", "weight": 0.0}], steps=2, device=device)
    tr = train(cfg, tmp_path, progress=False, evaluate=False)
    assert all(r["optimizer_steps"] == 0 and r.get("no_signal") == 1 for r in tr.metrics.rows())
    before, _ = load_policy(micro_dir)
    for pa, pb in zip(before.parameters(), tr.model.parameters()):
        assert torch.equal(pa, pb.cpu())


def test_collapse_detector_runs_live_and_logs_its_metrics(micro_dir, tmp_path):
    tr = train(cfg_for(micro_dir, steps=6), tmp_path, progress=False, evaluate=False)
    rows = tr.metrics.rows()
    assert "collapse/len_drop" in rows[-1] and "collapse/flag" in rows[-1]


def test_collapse_warning_on_a_planted_stream():
    """The trainer's hook on a synthetic stream: length halves while accuracy stays flat -> a warning."""
    from lengthrl.analysis.collapse import CollapseDetector

    det = CollapseDetector(window=4)
    warnings = [Trainer._watch_collapse(det, {"step": i + 1, "len/mean": 100.0 / (1 + i), "acc": 0.3,
                                              "entropy": 1.0}) for i in range(8)]
    assert any(w is not None and w.kind == "length" for w in warnings)
    assert Trainer._watch_collapse(det, {"step": 9, "len/mean": float("nan"), "acc": 0.3}) is None


def test_tensorboard_scalars_when_installed(micro_dir, tmp_path):
    """tensorboard is a dev dependency: the trainer writes every numeric metric as a scalar."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(cfg_for(micro_dir, steps=2), tmp_path, progress=False, evaluate=False)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"acc", "len/mean", "reward/mean"} <= set(tags)
    assert [e.step for e in acc.Scalars("len/mean")] == [1, 2]
