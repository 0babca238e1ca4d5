"""loss_agg_mode = 'prompt-mean' in the trainer: the update passes each row's group token count T_p and the
number of groups P, so micro-batches (and mini-batches of whole groups) give the gradient of
policy_loss(..., loss_agg_mode='prompt-mean', group_size=G) on the mini-batch; a training run takes it."""

from __future__ import annotations

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.objectives import policy_loss
from lengthrl.rollout import compute_logprobs
from lengthrl.train.validate import build_config
from lengthrl.train.loop import train
from lengthrl.train.update import UpdateBatch, ppo_update, prompt_mean_normalisers
from lengthrl.train.distributed import SINGLE

G = 4


def cfg_for(model_dir, **kw):
    base = dict(model=model_dir, task="arith_chain", train_prompts=64, eval_prompts=0, prompts_per_step=3,
                group_size=G, max_new_tokens=12, steps=2, checkpoint_every=0, sample_every=1, log_every=0,
                lr=1e-3, loss="grpo", loss_agg_mode="prompt-mean", grad_clip=0.0)
    return build_config(extra=base | kw)


def fixed_batch(vocab, B=12, P=3, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    rmask = (torch.arange(T)[None] < lengths[:, None]).long()
    return UpdateBatch(
        prompt_ids=torch.randint(4, vocab, (B, P), generator=g), prompt_mask=torch.ones(B, P, dtype=torch.long),
        response_ids=torch.randint(4, vocab, (B, T), generator=g) * rmask, response_mask=rmask,
        loss_mask=rmask.float(), advantages=torch.randn(B, generator=g), group_index=torch.arange(B) // G,
    )


def test_normalisers_by_hand():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.float32)
    b = UpdateBatch(torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1), torch.zeros(4, 3, dtype=torch.long),
                    mask.long(), mask, torch.zeros(4), torch.tensor([5, 5, 7, 9]))
    tokens, groups = prompt_mean_normalisers(b, SINGLE)
    assert tokens.tolist() == [3, 3, 3, 0] and float(groups) == 2  # group 9 has no loss token


def test_update_gradient_equals_prompt_mean_on_the_batch(micro_dir):
    """SGD, one step, one mini-batch: micro-batches of 1, 5 and the whole batch move the weights as the
    gradient of the prompt-mean loss of the whole batch does (computed here directly)."""
    from lengthrl.models import load_policy

    moved = []
    for micro in (0, 5, 1):
        model, _ = load_policy(micro_dir)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        batch = fixed_batch(model.config.vocab_size)
        ppo_update(model, opt, sched, batch, cfg_for(micro_dir, micro_batch_size=micro), torch.Generator())
        moved.append(before - torch.cat([p.detach().flatten() for p in model.parameters()]))
    model, _ = load_policy(micro_dir)
    batch = fixed_batch(model.config.vocab_size)
    logp = compute_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    out = policy_loss("grpo", logp, logp.detach(), batch.advantages, batch.loss_mask, loss_agg_mode="prompt-mean",
                      group_size=G)
    grads = torch.autograd.grad(out.loss, list(model.parameters()), retain_graph=True)
    ref = torch.cat([g.flatten() for g in grads])
    assert float(ref.abs().max()) > 1e-4
    for m in moved:
        assert torch.allclose(m, ref, atol=1e-6, rtol=1e-5), float((m - ref).abs().max())
    # and it is not seq-mean-token-mean's gradient (the lengths differ inside the groups)
    other = policy_loss("grpo", logp, logp.detach(), batch.advantages, batch.loss_mask)
    g2 = torch.cat([g.flatten() for g in torch.autograd.grad(other.loss, list(model.parameters()))])
    assert not torch.allclose(g2, ref, atol=1e-6)


def test_a_run_with_prompt_mean_and_dynamic_sampling(micro_dir, tmp_path):
    rows = train(cfg_for(micro_dir, max_new_tokens=24, dynamic_sampling="resample",
                         reward=[{"name": "correct"}, {"name": "dapo_overlong"}]), tmp_path, progress=False,
                 evaluate=False).metrics.rows()
    assert [r["step"] for r in rows] == [1, 2] and any(r["optimizer_steps"] == 1 for r in rows)


def test_bnpo_refuses_prompt_mean(micro_dir):
    with pytest.raises(ConfigError, match=r"config key 'loss_agg_mode': 'prompt-mean' needs a loss normalised"):
        cfg_for(micro_dir, loss="bnpo")
