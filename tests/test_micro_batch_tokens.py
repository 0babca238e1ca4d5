"""`micro_batch_tokens`: rows sorted by length and packed under a token budget, each micro-batch cut to its own
longest row. The packing itself (every row once, within the budget, groups consecutive), the update's gradients
and metrics equal to one micro-batch over the whole mini-batch for several losses (hypothesis over lengths), the
trainer end to end, and the config errors."""

from __future__ import annotations

import subprocess
import sys
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lengthrl.errors import ConfigError
from lengthrl.models import load_policy
from lengthrl.rollout import compute_logprobs
from lengthrl.train.config import describe
from lengthrl.train.validate import build_config
from lengthrl.train.loop import train
from lengthrl.train.update import (UpdateBatch, batched_logprobs, extents, micro_batches, ppo_update,
                                   token_budget_parts)
from runkit import SRC


def cfg_for(model_dir, **kw):
    base = dict(model=model_dir, task="arith_chain", train_prompts=64, eval_prompts=0, prompts_per_step=3,
                group_size=4, max_new_tokens=12, steps=2, checkpoint_every=0, sample_every=0, log_every=0,
                lr=1e-3, threads=1)
    return build_config(extra=base | kw)


# ---- the packing ---------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 30)), min_size=1, max_size=40),
       st.integers(1, 200), st.integers(0, 6))
def test_packing_keeps_every_row_once_within_the_budget(rows, budget, max_rows):
    pw, rw = [p for p, _ in rows], [r for _, r in rows]
    group = [i // 4 for i in range(len(rows))]
    parts = token_budget_parts(pw, rw, group, budget, max_rows)
    assert sorted(i for part in parts for i in part) == list(range(len(rows)))
    for part in parts:
        assert part  # at least one row each
        cost = len(part) * (max(pw[i] for i in part) + max(rw[i] for i in part))
        assert cost <= budget or len(part) == 1  # a row alone over the budget is its own micro-batch
        assert not max_rows or len(part) <= max_rows
        assert [group[i] for i in part] == sorted(group[i] for i in part)  # a group's rows consecutive
    # sorted by length: the micro-batches' response widths do not decrease
    widths = [max(rw[i] for i in part) for part in parts]
    assert widths == sorted(widths)


def _batch(prompt_lens, resp_lens, G=4, vocab=100, seed=0, T_pad=3, P_pad=2):
    """An UpdateBatch with left-padded prompts and right-padded responses of the given lengths (groups of G
    consecutive rows share their prompt), with padding columns beyond the longest row on both sides."""
    g = torch.Generator().manual_seed(seed)
    B = len(resp_lens)
    P, T = max(prompt_lens) + P_pad, max(resp_lens) + T_pad
    pmask = torch.zeros(B, P, dtype=torch.long)
    pids = torch.zeros(B, P, dtype=torch.long)
    for grp in range(B // G):
        n = prompt_lens[grp]
        ids = torch.randint(4, vocab, (n,), generator=g)
        for i in range(grp * G, grp * G + G):
            pmask[i, P - n:] = 1
            pids[i, P - n:] = ids
    lengths = torch.tensor(resp_lens)
    rmask = (torch.arange(T)[None] < lengths[:, None]).long()
    return UpdateBatch(prompt_ids=pids, prompt_mask=pmask,
                       response_ids=torch.randint(4, vocab, (B, T), generator=g) * rmask, response_mask=rmask,
                       loss_mask=rmask.float(), advantages=torch.randn(B, generator=g),
                       group_index=torch.arange(B) // G)


def test_extents_and_widths():
    b = _batch([3, 5], [1, 7, 2, 4, 6, 6, 3, 1])
    pw, rw, group = extents(b)
    assert pw == [3] * 4 + [5] * 4 and rw == [1, 7, 2, 4, 6, 6, 3, 1] and group == [0] * 4 + [1] * 4
    parts = micro_batches(b, 0, 24)
    for idx, p, r in parts:
        assert p == max(pw[i] for i in idx.tolist()) and r == max(rw[i] for i in idx.tolist())
    m = b.rows(parts[0][0]).trim(*parts[0][1:])
    assert m.prompt_ids.shape[1] == parts[0][1] and m.response_ids.shape[1] == parts[0][2]
    assert int(m.prompt_mask.sum()) == int(b.prompt_mask[parts[0][0]].sum())  # no real token dropped
    assert int(m.response_mask.sum()) == int(b.response_mask[parts[0][0]].sum())
    # off: one micro-batch of the whole width
    assert [(len(i), p, r) for i, p, r in micro_batches(b, 0, 0)] == [(8, 7, 10)]


# ---- the update equals one micro-batch -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_and_dir(micro_dir):
    model, _ = load_policy(micro_dir)
    return model, micro_dir


def _one_update(model, batch, cfg, logprob_fn):
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the weights stay: the next example reuses the model
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    res = ppo_update(model, opt, sched, batch, cfg, torch.Generator().manual_seed(0), logprob_fn=logprob_fn)
    return torch.cat([p.grad.flatten() for p in model.parameters()]), res.metrics


CASES = [("grpo", {}), ("dr_grpo", {}), ("gspo", {}), ("luspo", {}), ("dapo", {}),
         ("dapo", {"loss_agg_mode": "prompt-mean"}), ("grpo", {"beta": 0.1}), ("grpo", {"mini_batches": 2})]


@pytest.mark.parametrize("loss, extra", CASES, ids=[f"{l}-{'-'.join(e) or 'plain'}" for l, e in CASES])
@pytest.mark.parametrize("shared_prefix", [False, True], ids=["model-forward", "shared-prefix"])
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_update_with_a_token_budget_equals_one_micro_batch(model_and_dir, loss, extra, shared_prefix, data):
    model, mdir = model_and_dir
    groups = 3
    prompt_lens = data.draw(st.lists(st.integers(1, 6), min_size=groups, max_size=groups))
    resp_lens = data.draw(st.lists(st.integers(1, 12), min_size=4 * groups, max_size=4 * groups))
    budget = data.draw(st.integers(1, 120))
    batch = _batch(prompt_lens, resp_lens, seed=data.draw(st.integers(0, 3)))
    fn = lambda *a, **k: compute_logprobs(*a, shared_prefix=shared_prefix, **k)  # noqa: E731
    if extra.get("beta") or extra.get("mini_batches"):  # reference / old log-probs of the frozen weights
        with torch.no_grad():
            lp = batched_logprobs(model, batch, len(resp_lens), 1.0, fn)
            lp_packed = batched_logprobs(model, batch, 0, 1.0, fn, micro_tokens=budget)
        assert torch.allclose(lp, lp_packed, atol=1e-6)
        batch.ref_logp = lp - 0.05 * batch.response_mask if extra.get("beta") else None
        batch.old_logp = lp + 0.03 * batch.response_mask if extra.get("mini_batches") else None
    base = dict(loss=loss, grad_clip=0.0, **extra)
    g0, m0 = _one_update(model, batch, cfg_for(mdir, **base), fn)
    g1, m1 = _one_update(model, batch, cfg_for(mdir, micro_batch_tokens=budget, **base), fn)
    assert float(g0.abs().max()) > 1e-5  # a real gradient
    assert float((g0 - g1).abs().max()) < 1e-6 * max(1.0, float(g0.abs().max()))
    assert m0.keys() == m1.keys()
    for k in m0:
        assert m1[k] == pytest.approx(m0[k], rel=1e-5, abs=1e-6), k


def test_the_forwards_see_only_their_own_widths(model_and_dir):
    """The micro-batches the model's forward receives are cut: fewer padded positions than the full batch."""
    model, mdir = model_and_dir
    batch = _batch([2, 6, 4], [1, 1, 2, 2, 5, 5, 6, 6, 12, 12, 11, 3])
    seen = []

    def fn(model, p_ids, p_mask, r_ids, r_mask, **kw):
        seen.append((r_ids.shape[0], p_ids.shape[1] + r_ids.shape[1]))
        return compute_logprobs(model, p_ids, p_mask, r_ids, r_mask, **kw)

    _one_update(model, batch, cfg_for(mdir, loss="grpo", grad_clip=0.0, micro_batch_tokens=60), fn)
    assert len(seen) > 1 and all(rows * width <= 60 or rows == 1 for rows, width in seen)
    full = batch.response_ids.shape[0] * (batch.prompt_ids.shape[1] + batch.response_ids.shape[1])
    assert sum(r * w for r, w in seen) < full


# ---- the trainer -----------------------------------------------------------------------------------------------

def test_trainer_runs_with_a_token_budget(micro_dir, tmp_path):
    """Two steps with micro_batch_tokens; the first step (same rollout) gives the same update metrics as the
    whole batch in one micro-batch."""
    runs = {}
    for name, kw in (("tokens", dict(micro_batch_tokens=40)), ("whole", {})):
        tr = train(cfg_for(micro_dir, loss="grpo", reward=[{"name": "correct"}, {"name": "kimi", "weight": 1.0}],
                           **kw), tmp_path / name, progress=False, evaluate=False)
        runs[name] = tr.metrics.rows()
    assert [r["step"] for r in runs["tokens"]] == [1, 2]
    a, b = runs["tokens"][0], runs["whole"][0]
    assert a["len/mean"] == b["len/mean"] and a["optimizer_steps"] == 1
    for k in ("loss", "grad_norm", "entropy"):
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k


# ---- config ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, match", [
    (dict(micro_batch_tokens=-1), "config key 'micro_batch_tokens': must be >= 0"),
    (dict(micro_batch_tokens=64, loss="bnpo"), "config key 'micro_batch_tokens': loss 'bnpo' normalises each"),
])
def test_config_errors(micro_dir, extra, match):
    with pytest.raises(ConfigError, match=match) as e:
        cfg_for(micro_dir, **extra)
    assert "\n" not in str(e.value)


def test_config_error_for_the_diffusion_policy():
    with pytest.raises(ConfigError, match="config key 'micro_batch_tokens': the diffusion policy") as e:
        build_config(extra=dict(policy="diffusion", micro_batch_tokens=64, top_k=0))
    assert "\n" not in str(e.value)


def test_config_show_lists_the_key():
    keys = {row[0]: row for row in describe()}
    assert keys["micro_batch_tokens"][2] == "0" and "token budget" in keys["micro_batch_tokens"][3]
    p = subprocess.run([sys.executable, "-m", "lengthrl", "config", "show"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=SRC, COLUMNS="200"), timeout=120)
    assert p.returncode == 0, p.stderr
    assert "micro_batch_tokens" in p.stdout
