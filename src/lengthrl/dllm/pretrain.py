"""Masked-diffusion pre-training of the organism from scratch (LLaDA, arXiv 2502.09992).

For a prompt x and response y (answer tokens, then EOS, padded with EOS to the generation length T, as LLaDA's
SFT does, so the model learns where to stop): draw t ~ U(0, 1) per sequence, mask each response token
independently with probability p = (1 - eps) t + eps (eps = 1e-3 as in LLaDA), predict the masked tokens from
the rest and minimise

    L = (1/B) sum_b (1/|y_b|) sum_{i masked} -log p_theta(y_bi | x_b, y_b masked) / p_b

(cross-entropy of masked tokens weighted 1/t, each sequence normalised by its response length, mean over the
batch: LLaDA's SFT normalisation). The prompt is never masked.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from lengthrl.dllm.forward import full_logits
from lengthrl.dllm.model import (
    DLLM_META, LoadedDiffusionModel, TinyDiffusionConfig, check_tokenizer, load_diffusion_model,
    save_diffusion_model, tiny_diffusion_model,
)
from lengthrl.errors import ConfigError, DataError
from lengthrl.rollout.hf import left_pad
from lengthrl.train.prompts import encode_prompts
from lengthrl.tasks.base import Sample, Task


def encode_samples(tokenizer, samples: list[Sample], gen_length: int):
    """(prompt_ids [B, P], prompt_mask [B, P], response_ids [B, T=gen_length]) for training: the response is
    the sample's solution (else its answer) + EOS, padded with EOS to `gen_length`."""
    check_tokenizer(tokenizer)
    prompt_ids, prompt_mask = left_pad(encode_prompts(tokenizer, samples, None), tokenizer.pad_token_id)
    resp = torch.full((len(samples), gen_length), tokenizer.eos_token_id, dtype=torch.long)
    for b, s in enumerate(samples):
        text = s.solution if s.solution is not None else s.answer
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) + 1 > gen_length:
            raise DataError(
                f"sample {s.id!r}: field solution/answer is {len(ids)} tokens + EOS, longer than gen_length "
                f"{gen_length}; raise gen_length"
            )
        resp[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return prompt_ids, prompt_mask, resp


def masked_diffusion_loss(model, prompt_ids: torch.Tensor, response_ids: torch.Tensor, mask_token_id: int, *,
                          prompt_mask: torch.Tensor | None = None, response_mask: torch.Tensor | None = None,
                          t: torch.Tensor | None = None, masked: torch.Tensor | None = None,
                          eps: float = 1e-3, generator: torch.Generator | None = None) -> torch.Tensor:
    """The LLaDA loss above (scalar). `t` [B] and `masked` [B, T] may be given (tests); otherwise they are drawn.
    `response_mask` [B, T] marks the response tokens (default: all T positions; |y_b| is its row sum)."""
    B, T = response_ids.shape
    rm = torch.ones_like(response_ids, dtype=torch.bool) if response_mask is None else response_mask.bool()
    if t is None:
        t = torch.rand(B, generator=generator)
    if t.shape != (B,) or bool(((t < 0) | (t > 1)).any()) or bool(t.isnan().any()):
        raise ConfigError(f"t must be [B]={B} values in [0, 1], got shape {tuple(t.shape)}")
    p = (1 - eps) * t + eps  # [B] masking probability
    if masked is None:
        masked = torch.rand(B, T, generator=generator) < p[:, None]
    masked = masked.bool() & rm  # [B, T]
    x = torch.cat([prompt_ids, torch.where(masked, mask_token_id, response_ids)], dim=1)
    attn = None
    if prompt_mask is not None:
        attn = torch.cat([prompt_mask.long(), torch.ones_like(response_ids)], dim=1)
    logits = full_logits(model, x, attn)[:, prompt_ids.shape[1]:].float()  # [B, T, V]
    ce = F.cross_entropy(logits.reshape(B * T, -1), response_ids.reshape(-1), reduction="none").view(B, T)
    lengths = rm.sum(1).clamp(min=1)  # [B]
    per_seq = (ce * masked / p[:, None]).sum(1) / lengths  # [B]
    return per_seq.mean()


def pretrain(model, tokenizer, task: Task, steps: int, gen_length: int, *, batch_size: int = 64, lr: float = 3e-3,
             seed: int = 0, n_train: int | None = None, log=None) -> list[float]:
    """Train `model` in place with `masked_diffusion_loss` on `task`'s train split; returns the loss per step.
    AdamW, cosine decay from `lr` with a 5% warm-up."""
    if steps < 0 or batch_size < 1:
        raise ConfigError(f"steps must be >= 0 and batch_size >= 1 (got {steps}, {batch_size})")
    check_tokenizer(tokenizer)
    samples = task.samples("train", n=n_train, seed=seed)
    if not samples:
        raise DataError(f"task {task.name!r} has no train samples")
    g = torch.Generator().manual_seed(seed)
    pids, pmask, rids = encode_samples(tokenizer, samples, gen_length)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    model.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(len(samples), (batch_size,), generator=g)
        loss = masked_diffusion_loss(model, pids[idx], rids[idx], tokenizer.mask_token_id, prompt_mask=pmask[idx],
                                     generator=g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log and (step % max(1, steps // 10) == 0 or step == steps - 1):
            log(f"pretrain step {step + 1}/{steps} loss {loss.item():.4f}")
    model.eval()
    return losses


def build_diffusion_organism(out_dir: str | Path, task: Task, tokenizer, steps: int, seed: int = 0, *,
                             gen_length: int = 8, cfg: TinyDiffusionConfig | None = None, batch_size: int = 64,
                             lr: float = 3e-3, n_train: int | None = None, log=None) -> LoadedDiffusionModel:
    """Pre-train a diffusion organism on `task` (the first `n_train` train samples, default all) and save it to
    `out_dir`; reuse the directory when it already holds an organism built with the same recipe (task, steps,
    seed, gen_length, size, lr, batch, n_train, vocab)."""
    cfg = cfg or TinyDiffusionConfig()
    recipe = {"task": task.name, "steps": steps, "seed": seed, "gen_length": gen_length, "cfg": asdict(cfg),
              "batch_size": batch_size, "lr": lr, "n_train": n_train, "vocab": len(tokenizer)}
    out = Path(out_dir)
    meta_file = out / DLLM_META
    if meta_file.is_file() and json.loads(meta_file.read_text()).get("recipe") == recipe:
        return load_diffusion_model(out)
    model = tiny_diffusion_model(tokenizer, cfg, seed=seed)
    losses = pretrain(model, tokenizer, task, steps, gen_length, batch_size=batch_size, lr=lr, seed=seed,
                      n_train=n_train, log=log)
    tail = losses[-max(1, len(losses) // 10):]
    save_diffusion_model(model, tokenizer, out, extra={
        "recipe": recipe, "gen_length": gen_length, "final_loss": sum(tail) / len(tail) if tail else None})
    return load_diffusion_model(out)
