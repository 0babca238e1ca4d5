"""The diffusion policy's log-prob estimators in the trainer (`dllm_logprob`, `p_mask_prompt`, `dllm_bias_every`):
values against hand computations, properties of the per-response random masks, a short trainer run per
estimator, resume with a stochastic estimator, config errors, and 2 ranks (DDP) against one process."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.dllm.adapter import DiffusionLogprobs, estimator_bias_metrics, row_seeds
from lengthrl.dllm.forward import full_logits
from lengthrl.dllm.logprobs import ar_logprobs, mean_field_logprobs, random_mask_logprobs
from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, save_diffusion_model, tiny_diffusion_model
from lengthrl.dllm.rollout import generate_ar
from lengthrl.errors import ConfigError
from lengthrl.rollout import left_pad
from lengthrl.tasks.base import Sample
from lengthrl.train.prompts import encode_prompts
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, train

TOK = char_tokenizer()
MASK = TOK.mask_token_id
MICRO = TinyDiffusionConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=32)
IDS = dict(mask_token_id=MASK, eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id)


@pytest.fixture(scope="module")
def model():
    m = tiny_diffusion_model(TOK, MICRO, seed=1)
    with torch.no_grad():
        m.cls.predictions.bias[TOK.eos_token_id] += 1.5  # responses of varied length
    return m.eval()


@pytest.fixture(scope="module")
def batch(model):
    samples = [Sample(id=p, prompt=p, answer="") for p in ["1+2=", "13+4=", "7="]]
    pids, pmask = left_pad(encode_prompts(TOK, samples, None), TOK.pad_token_id)
    return generate_ar(model, pids, pmask, gen_length=5, n=3, generator=torch.Generator().manual_seed(0), **IDS)


def fn(estimator="exact", **kw):
    return DiffusionLogprobs(MASK, TOK.pad_token_id, gen_length=5, estimator=estimator, **kw)


def args(b):
    return b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask


def test_exact_and_mean_field_values(model, batch):
    """'exact' is ar_logprobs; 'mean_field' without prompt masking is log p(y_t | x, MASK x 5) by hand."""
    with torch.no_grad():
        ex = fn()(model, *args(batch))
        assert torch.equal(ex, ar_logprobs(model, batch.prompt_ids, batch.response_ids, MASK,
                                           prompt_mask=batch.prompt_mask, response_mask=batch.response_mask))
        mf, ent = fn("mean_field")(model, *args(batch), return_entropy=True)
        P = batch.prompt_ids.shape[1]
        x = torch.cat([batch.prompt_ids, torch.full((len(batch), 5), MASK)], 1)
        attn = torch.cat([batch.prompt_mask, torch.ones(len(batch), 5, dtype=torch.long)], 1)
        lp = full_logits(model, x, attn)[:, P:].float().log_softmax(-1)  # [B, 5, V]
        hand = lp.gather(-1, batch.response_ids[..., None])[..., 0] * batch.response_mask
        assert torch.allclose(mf, hand, atol=1e-6)
        h = -(lp.exp() * lp).sum(-1) * batch.response_mask
        assert torch.allclose(ent, h, atol=1e-6) and bool((ent[batch.response_mask == 0] == 0).all())
        assert torch.allclose(mf[:, 0], ex[:, 0], atol=1e-5)  # position 0: the same input for both


def test_prompt_masking_by_hand(model, batch):
    """p_mask_prompt: the prompt tokens whose per-response uniform (row_seeds) is below p become MASK."""
    f = fn("mean_field", p_mask_prompt=0.5, seed=7)
    with torch.no_grad():
        got = f(model, *args(batch))
        seeds = row_seeds(7, *args(batch))
        P = batch.prompt_ids.shape[1]
        noise = torch.stack([torch.rand(P, generator=torch.Generator().manual_seed(s)) for s in seeds])
        hit = (noise < 0.5) & batch.prompt_mask.bool()
        assert bool(hit.any()) and not bool(hit.all())
        x = torch.cat([torch.where(hit, MASK, batch.prompt_ids), torch.full((len(batch), 5), MASK)], 1)
        attn = torch.cat([batch.prompt_mask, torch.ones(len(batch), 5, dtype=torch.long)], 1)
        lp = full_logits(model, x, attn)[:, P:].float().log_softmax(-1)
        hand = lp.gather(-1, batch.response_ids[..., None])[..., 0] * batch.response_mask
        assert torch.allclose(got, hand, atol=1e-6)
        assert not torch.allclose(got, fn("mean_field")(model, *args(batch)), atol=1e-4)  # the masks matter


def test_random_mask_by_hand(model, batch):
    f = fn("random_mask", num_draws=3, seed=2)
    with torch.no_grad():
        got = f(model, *args(batch))
        seeds = row_seeds(2, *args(batch))
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        s = torch.stack([torch.rand(3, 1, generator=g) for g in gens], 1)
        u = torch.stack([torch.rand(3, 5, generator=g) for g in gens], 1)
        ref = random_mask_logprobs(model, batch.prompt_ids, batch.response_ids, MASK, prompt_mask=batch.prompt_mask,
                                   response_mask=batch.response_mask, num_draws=3, noise=(s, u))
        assert torch.equal(got, ref)
        # draw 0 by hand for one row: masked positions scored on the partly masked response
        P, b = batch.prompt_ids.shape[1], 0
        hit = u[0, b] < s[0, b]
        x = torch.cat([batch.prompt_ids[b], torch.where(hit, MASK, batch.response_ids[b])])[None]
        attn = torch.cat([batch.prompt_mask[b], torch.ones(5, dtype=torch.long)])[None]
        lp0 = full_logits(model, x, attn)[0, P:].float().log_softmax(-1)
        lp0 = lp0.gather(-1, batch.response_ids[b][:, None])[:, 0]
        only0 = hit & ~(u[1:, b] < s[1:, b]).any(0) & batch.response_mask[b].bool()
        assert torch.allclose(got[b][only0], lp0[only0], atol=1e-6)


@settings(max_examples=8, deadline=None)
@given(perm_seed=st.integers(0, 1000), est=st.sampled_from(["mean_field", "random_mask"]))
def test_masks_follow_the_response_not_the_batch(model, batch, perm_seed, est):
    """A response scored in another order, another batch (a subset) or trimmed gets the same values."""
    f = fn(est, p_mask_prompt=0.3 if est == "mean_field" else 0.0, num_draws=2)
    with torch.no_grad():
        full = f(model, *args(batch))
        perm = torch.randperm(len(batch), generator=torch.Generator().manual_seed(perm_seed))[:5]
        part = batch.select(perm)
        assert torch.allclose(f(model, *args(part)), full[perm], atol=1e-6)
        T = int(batch.lengths.max())
        trimmed = f(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids[:, :T], batch.response_mask[:, :T])
        assert torch.allclose(trimmed, full[:, :T], atol=1e-6)
        assert bool((full[batch.response_mask == 0] == 0).all()) and bool((full <= 0).all())


def test_bias_metrics_by_hand(model, batch):
    f = fn("mean_field")
    m = estimator_bias_metrics(model, f, batch, rows=6)
    b = batch.select(torch.arange(6))
    with torch.no_grad():
        d = f(model, *args(b)).sum(1) - fn()(model, *args(b)).sum(1)
    assert m["dllm_bias/mean_field/bias_seq"] == pytest.approx(float(d.mean()), abs=1e-6)
    assert m["dllm_bias/mean_field/mae_seq"] == pytest.approx(float(d.abs().mean()), abs=1e-6)
    assert -1 <= m["dllm_bias/mean_field/corr_seq"] <= 1
    both = estimator_bias_metrics(model, fn(), batch, rows=4)  # exact: both approximations are measured
    assert {k.split("/")[1] for k in both} == {"mean_field", "random_mask"}


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    from lengthrl.dllm.pretrain import pretrain
    from lengthrl.tasks import get_task

    m = tiny_diffusion_model(TOK, MICRO, seed=0)
    pretrain(m, TOK, get_task("dllm_addition", max_operand=2), steps=150, gen_length=3, batch_size=32, lr=3e-3)
    return str(save_diffusion_model(m, TOK, tmp_path_factory.mktemp("est") / "micro"))


def cfg_for(model_dir, **kw):
    base = dict(policy="diffusion", model=model_dir, task="dllm_addition", task_args={"max_operand": 2},
                train_prompts=8, eval_prompts=0, prompts_per_step=2, group_size=4, max_new_tokens=3, steps=2,
                checkpoint_every=0, sample_every=0, log_every=0, lr=3e-3, adv_eps=1e-4,
                reward=[{"name": "correct", "weight": 2.0}, {"name": "constant", "weight": -1.0}])
    return build_config(extra=base | kw)


@pytest.mark.parametrize("est,extra", [("exact", {}), ("mean_field", {"p_mask_prompt": 0.15}),
                                       ("random_mask", {"dllm_mask_draws": 2})])
def test_short_trainer_run_per_estimator(micro_dir, tmp_path, est, extra):
    tr = Trainer(cfg_for(micro_dir, dllm_logprob=est, dllm_bias_every=1, dllm_bias_rows=4, **extra), tmp_path,
                 progress=False)
    assert tr.logprob_fn.estimator == est
    rows = tr.run()
    assert [r["step"] for r in rows] == [1, 2] and any(r.get("optimizer_steps") for r in rows)
    names = ["mean_field", "random_mask"] if est == "exact" else [est]
    for r in rows:
        for n in names:
            assert torch.isfinite(torch.tensor(r[f"dllm_bias/{n}/mae_seq"]))
            assert r[f"dllm_bias/{n}/mae_seq"] >= abs(r[f"dllm_bias/{n}/bias_seq"]) - 1e-9
        if "ratio_max" in r:  # one update per batch: old = new log-probs of the same estimator
            assert r["ratio_min"] == r["ratio_max"] == 1.0 and r["entropy"] > 0
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert f"dllm_bias/{names[0]}/bias_seq" in logged[0]


def test_stochastic_estimator_resumes_exactly(micro_dir, tmp_path):
    kw = dict(dllm_logprob="random_mask", dllm_mask_draws=2, epochs=2, steps=3)
    full = train(cfg_for(micro_dir, **kw), tmp_path / "full", progress=False, evaluate=False)
    train(cfg_for(micro_dir, **kw | dict(steps=2, checkpoint_every=1)), tmp_path / "cut", progress=False,
          evaluate=False)
    res = train(cfg_for(micro_dir, **kw | dict(checkpoint_every=1)), tmp_path / "cut", resume=True, progress=False,
                evaluate=False)
    for k, v in full.model.state_dict().items():
        assert torch.allclose(res.model.state_dict()[k], v, atol=1e-6), k
    assert sum(r.get("optimizer_steps", 0) for r in full.metrics.rows()) > 0  # the weights moved
    # the old log-probs (before epoch 1) and the update's first forward score a response with the same masks
    b = full.engine.generate([[5, 6, 14]], 4, full.params)
    f = full.logprob_fn
    assert torch.equal(f(full.model, *args(b)), f(full.model, *args(b)))


def test_config_errors(micro_dir):
    with pytest.raises(ConfigError, match="'dllm_logprob'"):
        cfg_for(micro_dir, dllm_logprob="elbo")
    with pytest.raises(ConfigError, match="'p_mask_prompt'"):
        cfg_for(micro_dir, p_mask_prompt=0.15)  # exact: no prompt masking
    with pytest.raises(ConfigError, match="'p_mask_prompt'"):
        cfg_for(micro_dir, dllm_logprob="mean_field", p_mask_prompt=1.0)
    with pytest.raises(ConfigError, match="'dllm_mask_draws'"):
        cfg_for(micro_dir, dllm_mask_draws=0)
    with pytest.raises(ConfigError, match="'dllm_bias_every'"):
        build_config(extra={"dllm_bias_every": 5})  # an AR run
    with pytest.raises(ConfigError, match="'dllm_logprob'"):
        build_config(extra={"dllm_logprob": "mean_field"})


# ---- 2 ranks (DDP, gloo) against one process -------------------------------------------------------------------
DDP_KW = dict(dllm_logprob="mean_field", p_mask_prompt=0.15, rollout_shards=2, steps=2, checkpoint_every=1,
              mini_batches=2, micro_batch_size=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, model_dir: str, out: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from lengthrl.train.distributed import init_from_env, shutdown

    d = init_from_env("ddp")
    train(cfg_for(model_dir, **DDP_KW), out, progress=False, evaluate=False, dist=d)
    shutdown(d)


def test_ddp_equals_one_process(micro_dir, tmp_path):
    one = train(cfg_for(micro_dir, **DDP_KW), tmp_path / "one", progress=False, evaluate=False)
    ctx = mp.start_processes(_worker, args=(_free_port(), micro_dir, str(tmp_path / "two")), nprocs=2, join=False,
                             start_method="spawn")
    try:
        while not ctx.join():
            pass
    except mp.ProcessExitedException:  # an abort at teardown after the work is tolerated if results exist
        pass
    got = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    ref = one.metrics.rows()
    assert [r["step"] for r in got] == [1, 2] and any(r.get("optimizer_steps") for r in ref)
    for a, b in zip(ref, got):
        for k in ("acc", "reward/mean", "loss", "grad_norm", "len/mean"):
            if k in a:
                assert b[k] == pytest.approx(a[k], abs=1e-6), k
    from safetensors.torch import load_file

    w2 = load_file(tmp_path / "two" / "final" / "model.safetensors")
    sd = one.model.state_dict()
    assert len(w2) > 10 and set(w2) <= set(sd)  # (the tied decoder weight is saved once, as the embedding)
    bad = {k: float((v - sd[k]).abs().max()) for k, v in w2.items() if not torch.allclose(v, sd[k], atol=1e-6)}
    # the attention key bias has an exactly zero gradient (softmax is shift-invariant), so AdamW turns
    # round-off-sized gradients (1e-10) into lr-sized steps there: it is the one parameter not compared
    assert set(bad) <= {k for k in w2 if k.endswith("attention.self.key.bias")}, bad
    with pytest.raises(ConfigError, match="'dist_strategy'"):
        from lengthrl.train.distributed import Dist

        Trainer(cfg_for(micro_dir), tmp_path / "x", progress=False,
                dist=Dist(rank=0, world_size=2, strategy="fsdp"))
