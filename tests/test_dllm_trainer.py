"""JustGRPO through the main trainer (`policy = "diffusion"`) on a micro diffusion model: rollout log-probs equal
the update's recomputed log-probs, a few steps end to end, checkpoints and resume, config errors."""

import json

import pytest
import torch

from lengthrl.dllm.adapter import DiffusionEngine, DiffusionLogprobs, load
from lengthrl.dllm.forward import full_logits
from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, save_diffusion_model, tiny_diffusion_model
from lengthrl.dllm.pretrain import pretrain
from lengthrl.errors import ConfigError
from lengthrl.rewards import CompositeReward
from lengthrl.rollout import SamplingParams
from lengthrl.tasks import TASKS, get_task
from lengthrl.tasks.base import Sample, Score, Task
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, train

TOK = char_tokenizer()
STEPS = 60
MICRO = TinyDiffusionConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=32)


def make_micro(path, steps=STEPS):
    """A micro BERT briefly pre-trained on the task (some responses right, some wrong), saved to `path`."""
    model = tiny_diffusion_model(TOK, MICRO, seed=0)
    pretrain(model, TOK, get_task("dllm_addition", max_operand=2), steps=steps, gen_length=3, batch_size=32,
             lr=3e-3)
    return save_diffusion_model(model, TOK, path)


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    return make_micro(tmp_path_factory.mktemp("dllm") / "micro")


def cfg_for(model_dir, **kw):
    base = dict(policy="diffusion", model=str(model_dir), task="dllm_addition", task_args={"max_operand": 2},
                train_prompts=8, eval_prompts=3, prompts_per_step=2, group_size=8, max_new_tokens=3, steps=3,
                checkpoint_every=0, sample_every=1, log_every=0, lr=3e-3, adv_eps=1e-4,
                reward=[{"name": "correct", "weight": 2.0}, {"name": "constant", "weight": -1.0}])
    return build_config(extra=base | kw)


def test_rollout_logp_equals_update_logp(micro_dir, device):
    """The engine's sampled-token log-probs are what the trainer's log-prob function recomputes (ratio 1)."""
    model, tok = load(micro_dir)
    model.to(device)
    eng = DiffusionEngine(model, tok, seed=0)
    fn = DiffusionLogprobs(tok.mask_token_id, tok.pad_token_id, gen_length=5)
    prompts = [tok("1+2=")["input_ids"], tok("10+2=")["input_ids"]]  # different lengths: left padding
    for temp in (1.0, 0.7):
        b = eng.generate(prompts, 6, SamplingParams(temperature=temp, max_new_tokens=5, seed=3))
        assert b.response_ids.shape[1] == int(b.lengths.max()) <= 5
        d = b.to(device)
        logp, ent = fn(model, d.prompt_ids, d.prompt_mask, d.response_ids, d.response_mask, temperature=temp,
                       return_entropy=True)
        logp, ent = logp.cpu(), ent.cpu()
        assert torch.allclose(logp, b.logp, atol=1e-5), (logp - b.logp).abs().max()
        assert bool((logp <= 0).all()) and bool((ent[b.response_mask == 0] == 0).all())
        assert bool((ent[b.response_mask == 1] > 0).all())


def test_entropy_matches_full_softmax(micro_dir):
    """Entropy of position t, by hand: canvas [prompt, y_<t, MASK...], full logits, -sum p log p."""
    model, tok = load(micro_dir)
    fn = DiffusionLogprobs(tok.mask_token_id, tok.pad_token_id, gen_length=3)
    pids = torch.tensor([tok("2+1=")["input_ids"]])
    resp = torch.tensor([[tok.convert_tokens_to_ids("3"), tok.eos_token_id]])
    logp, ent = fn(model, pids, torch.ones_like(pids), resp, torch.ones_like(resp), return_entropy=True)
    for t in range(2):
        x = torch.cat([pids, resp[:, :t], torch.full((1, 3 - t), tok.mask_token_id)], 1)
        lp = full_logits(model, x)[0, pids.shape[1] + t].log_softmax(-1)
        assert abs(float(ent[0, t]) - float(-(lp.exp() * lp).sum())) < 1e-5
        assert abs(float(logp[0, t]) - float(lp[resp[0, t]])) < 1e-5


def test_greedy_engine_is_deterministic_and_top_k_refused(micro_dir):
    model, tok = load(micro_dir)
    eng = DiffusionEngine(model, tok)
    p = [tok("2+2=")["input_ids"]]
    a = eng.generate(p, 3, SamplingParams(temperature=0.0, max_new_tokens=3))
    assert bool((a.response_ids == a.response_ids[0]).all())
    with pytest.raises(ConfigError, match="top_k"):
        eng.generate(p, 1, SamplingParams(top_k=5, max_new_tokens=3))


def test_justgrpo_steps_through_trainer(micro_dir, tmp_path, device):
    cfg = cfg_for(micro_dir, device=device)
    tr = Trainer(cfg, tmp_path, progress=False)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    rows = tr.run()
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["ratio_min"] == r["ratio_max"] == 1.0  # one update per batch
        assert r["reward/constant"] == 1.0 and 0 <= r["acc"] <= 1
        assert r["reward/mean"] == pytest.approx(2 * r["acc"] - 1, abs=1e-6)  # +1 / -1 rewards
        assert r["len/max"] <= 3 and r["entropy"] > 0 and r["optimizer_steps"] in (0, 1)
    assert sum(r["optimizer_steps"] for r in rows) >= 1  # some group had mixed rewards
    changed = sum(float((tr.model.state_dict()[k] - v).abs().sum()) for k, v in before.items())
    assert changed > 0
    # the saved model is a diffusion LM directory again, and evaluates through the same engine
    model, tok = load(tmp_path / "final")
    assert torch.equal(model.state_dict()["cls.predictions.bias"],
                       tr.model.state_dict()["cls.predictions.bias"].cpu())
    res = tr.evaluate()
    assert res.metrics["n_records"] == 3 and json.loads((tmp_path / "eval.json").read_text())["task"] == "dllm_addition"


def test_resume_equals_uninterrupted(micro_dir, tmp_path):
    full = train(cfg_for(micro_dir, steps=3), tmp_path / "full", progress=False, evaluate=False)
    train(cfg_for(micro_dir, steps=2, checkpoint_every=1), tmp_path / "cut", progress=False, evaluate=False)
    resumed = train(cfg_for(micro_dir, steps=3, checkpoint_every=1), tmp_path / "cut", resume=True,
                    progress=False, evaluate=False)
    assert resumed.metrics.rows()[-1]["acc"] == full.metrics.rows()[-1]["acc"]
    for k, v in full.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[k], v, atol=1e-6), k


class StartsWithSeven(Task):
    """Correct when the response starts with "7": learnable from a random init in a few steps."""

    name = "test_starts_with_7"

    def samples(self, split="train", n=None, seed=0):
        return [Sample(id=str(i), prompt=f"{i}=", answer="7") for i in range(10)][:n]

    def score(self, sample, response):
        ok = response.startswith("7")
        return Score(correct=ok, reward=float(ok))


if StartsWithSeven.name not in TASKS:
    TASKS.register(StartsWithSeven.name, StartsWithSeven)


def test_reward_rises_on_an_easy_task(tmp_path):
    """JustGRPO through the trainer on a random-init model whose "7" is a plausible first token: 12 steps raise
    the train-sample accuracy, and the rollout log-probs are the update's (ratio exactly 1)."""
    model = tiny_diffusion_model(TOK, TinyDiffusionConfig(hidden_size=32, intermediate_size=64), seed=0)
    with torch.no_grad():
        model.cls.predictions.bias[TOK.convert_tokens_to_ids("7")] += 2.0
    d = save_diffusion_model(model, TOK, tmp_path / "init")
    cfg = cfg_for(d, task=StartsWithSeven.name, task_args={}, train_prompts=10, eval_prompts=0, steps=12,
                  prompts_per_step=4, reward=[{"name": "correct", "weight": 2.0}, {"name": "constant", "weight": -1.0}])
    rows = train(cfg, tmp_path / "run", progress=False, evaluate=False).metrics.rows()
    assert len(rows) == 12 and all(r["ratio_min"] == r["ratio_max"] == 1.0 for r in rows if "ratio_max" in r)
    first = sum(r["acc"] for r in rows[:3]) / 3
    last = sum(r["acc"] for r in rows[-3:]) / 3
    assert last > first


def test_config_errors(micro_dir):
    with pytest.raises(ConfigError, match="'policy'"):
        cfg_for(micro_dir, policy="nope")
    with pytest.raises(ConfigError, match="top_k"):
        cfg_for(micro_dir, top_k=4)
    with pytest.raises(ConfigError, match="'model'"):
        Trainer(cfg_for("/nonexistent/dir"), "/tmp/unused-run", progress=False)


def test_constant_term_gives_plus_minus_one():
    r, parts = CompositeReward.from_config([{"name": "correct", "weight": 2.0},
                                            {"name": "constant", "weight": -1.0}])([3, 4, 5, 6], [1, 0, 0, 1], 2)
    assert r.tolist() == [1.0, -1.0, -1.0, 1.0] and parts["constant"].tolist() == [1.0] * 4


def test_addition_task_is_registered():
    t = get_task("dllm_addition", max_operand=3)
    s = t.samples("train", 2)
    assert t.score(s[0], s[0].answer).correct and not t.score(s[0], s[0].answer + "1").correct


def test_demo_end_to_end_on_micro_model(micro_dir, tmp_path):
    from lengthrl.dllm.demo import DEMO_CONFIG, run_demo

    sets = [f"model={micro_dir!s}", "task_args.max_operand=2", "max_new_tokens=3", "steps=2", "train_prompts=8",
            "eval_prompts=2", "prompts_per_step=2", "lr=3e-3"]
    res = run_demo(tmp_path, overrides=sets, n=4, ks=(1, 2, 4), test_prompts=2, progress=False, log=lambda m: None)
    assert DEMO_CONFIG["policy"] == "diffusion" and res["train_summary"]["steps"] == 2
    assert res["train_summary"]["ratio_max"] == 1.0
    for when in ("before", "after"):
        assert set(res[when]["sampling"]) == {"ar", "confidence"}
        for c in res[when]["sampling"].values():
            p = [c["passk"][k] for k in (1, 2, 4)]
            assert all(0 <= x <= 1 for x in p) and p == sorted(p)  # pass@k non-decreasing in k
        ar = next(g for g in res[when]["greedy"] if g["block_length"] == 1)
        assert ar["forwards_per_token"] == pytest.approx(1.0, abs=0.34)  # rows stop at EOS: at most 1
    text = (tmp_path / "passk.md").read_text()
    assert "pass@4" in text and "greedy accuracy before" in text
    assert (tmp_path / "passk.png").stat().st_size > 0 and (tmp_path / "train" / "final" / "config.json").is_file()


def test_config_file_parses():
    from pathlib import Path

    from lengthrl.dllm.demo import DEMO_CONFIG
    from lengthrl.train.config import to_dict

    cfg = to_dict(build_config(Path(__file__).parent.parent / "configs" / "justgrpo_organism.toml"))
    assert {k: cfg[k] for k in DEMO_CONFIG} == DEMO_CONFIG  # the demo runs exactly the shipped config


def test_ppo_epochs_use_the_diffusion_logprobs(micro_dir, tmp_path):
    """With 2 epochs the old log-probs come from the diffusion log-prob function before the first update; the
    second epoch then sees ratios away from 1 (the weights moved), with a finite loss."""
    rows = train(cfg_for(micro_dir, steps=2, epochs=2, lr=1e-2), tmp_path, progress=False, evaluate=False).metrics.rows()
    moved = [r for r in rows if r["optimizer_steps"] == 2]
    assert moved and all(r["ratio_max"] > 1.0 or r["ratio_min"] < 1.0 for r in moved)


def test_lengthrl_eval_on_a_diffusion_model_directory(micro_dir, tmp_path):
    """`lengthrl eval --model DIR` recognises a diffusion LM directory and decodes it in AR order."""
    import json

    from lengthrl.cli import main

    out = tmp_path / "eval.json"
    rc = main(["eval", "--model", str(micro_dir), "--task", "dllm_addition", "--task-arg", "max_operand=2",
               "--samples", "4", "--k", "1,4", "--max-new-tokens", "3", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["metrics"]["n_records"] == len(res["records"]) > 0
    assert 0.0 <= res["metrics"]["pass@1"] <= res["metrics"]["pass@4"] <= 1.0
    assert all(1 <= r["length"] <= 3 for r in res["records"])
