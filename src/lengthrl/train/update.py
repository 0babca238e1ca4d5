"""The policy update: epochs × mini-batches × micro-batches, with the loss normalised exactly as on the whole
mini-batch (global token and sequence counts passed to every micro-batch), AdamW, clipping, schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lengthrl.objectives import LOSSES, policy_loss
from lengthrl.rollout import compute_logprobs


@dataclass
class UpdateBatch:
    """Everything the update needs, B sequences (groups contiguous)."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T] right-padded
    response_mask: torch.Tensor  # [B, T] long: real response tokens, EOS included
    loss_mask: torch.Tensor  # [B, T] float: response tokens (EOS included) that enter the loss
    advantages: torch.Tensor  # [B]
    group_index: torch.Tensor  # [B]
    old_logp: torch.Tensor | None = None  # [B, T]; None: the update's own first forward (one epoch, one mini-batch)
    ref_logp: torch.Tensor | None = None  # [B, T] when beta > 0

    def rows(self, idx: torch.Tensor) -> "UpdateBatch":
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return UpdateBatch(*(pick(getattr(self, f)) for f in self.__dataclass_fields__))


def loss_hparams(cfg) -> dict:
    hp = {"max_len": cfg.max_new_tokens}
    for key in ("clip_low", "clip_high", "loss_agg_mode", "dual_clip"):
        if getattr(cfg, key) is not None and (key != "dual_clip" or "dual_clip" in LOSSES[cfg.loss].extra_hparams):
            hp[key] = getattr(cfg, key)
    if cfg.beta > 0:
        hp["beta"] = cfg.beta
    return hp


@torch.no_grad()
def batched_logprobs(model, b: UpdateBatch, micro: int, temperature: float) -> torch.Tensor:
    """log-probs [B, T] of the batch's responses without gradient, `micro` rows at a time."""
    out = []
    for idx in torch.arange(b.response_ids.shape[0]).split(micro):
        out.append(compute_logprobs(model, b.prompt_ids[idx], b.prompt_mask[idx], b.response_ids[idx],
                                    b.response_mask[idx], temperature=temperature))
    return torch.cat(out)


def minibatch_rows(group_index: torch.Tensor, n_mini: int, g: torch.Generator) -> list[torch.Tensor]:
    """Split rows into `n_mini` mini-batches of whole groups, groups in a random order."""
    groups = torch.unique(group_index)
    perm = groups[torch.randperm(len(groups), generator=g)]
    return [torch.isin(group_index, chunk).nonzero().flatten() for chunk in perm.chunk(n_mini)]


def ppo_update(model, optimizer, scheduler, batch: UpdateBatch, cfg, g: torch.Generator) -> dict[str, float]:
    """Run cfg.epochs × cfg.mini_batches optimizer steps on `batch`. Returns averaged metrics (floats)."""
    spec = LOSSES[cfg.loss]
    hp = loss_hparams(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    sums: dict[str, float] = {}
    n_opt = skipped = 0
    nonfinite = None  # the first non-finite quantity of a skipped update: "loss" or "gradient"
    losses, norms, entropies = [], [], []
    model.train()
    for _epoch in range(cfg.epochs):
        for rows in minibatch_rows(batch.group_index, cfg.mini_batches, g):
            mb = batch.rows(rows)
            num_tokens = mb.loss_mask.sum()
            num_seqs = (mb.loss_mask.sum(-1) > 0).sum().to(num_tokens.dtype)
            micro = cfg.micro_batch_size or len(rows)
            parts = torch.arange(len(rows)).split(micro)
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros(())
            for idx in parts:
                m = mb.rows(idx)
                logp, ent = compute_logprobs(model, m.prompt_ids, m.prompt_mask, m.response_ids,
                                             m.response_mask, temperature=cfg.temperature, return_entropy=True)
                old = logp.detach() if m.old_logp is None else m.old_logp
                out = policy_loss(cfg.loss, logp, old, m.advantages, m.loss_mask, num_tokens=num_tokens,
                                  num_seqs=num_seqs, ref_logp=m.ref_logp, **hp)
                loss = out.loss if spec.global_norm else out.loss / len(parts)
                loss.backward()
                total = total + loss.detach()
                w = float(m.loss_mask.sum()) / max(float(num_tokens), 1.0)
                for k, v in out.metrics.items():
                    if k not in ("tokens", "seqs"):
                        sums[k] = sums.get(k, 0.0) + float(v) * w
                entropies.append(float((ent.detach() * m.loss_mask).sum() / m.loss_mask.sum().clamp(min=1)))
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            if not (torch.isfinite(total) and torch.isfinite(norm)):
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                nonfinite = nonfinite or ("loss" if not torch.isfinite(total) else "gradient")
                continue
            optimizer.step()
            scheduler.step()
            n_opt += 1
            losses.append(float(total))
            norms.append(float(norm))
    n_mb = cfg.epochs * cfg.mini_batches
    metrics = {k: v / n_mb for k, v in sums.items()}
    metrics.update(
        loss=sum(losses) / max(len(losses), 1), grad_norm=sum(norms) / max(len(norms), 1),
        entropy=sum(entropies) / max(len(entropies), 1), skipped_updates=skipped, optimizer_steps=n_opt,
        lr=scheduler.get_last_lr()[0],
    )
    if nonfinite:
        metrics["nonfinite"] = nonfinite
    return metrics


def make_optimizer(model, cfg, total_steps: int):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        if cfg.schedule == "linear":
            return 1.0 - frac
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
