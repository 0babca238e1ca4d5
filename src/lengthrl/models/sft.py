"""Supervised fine-tuning on (prompt, solution) pairs: the loss is on response tokens only, EOS included."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lengthrl.errors import ConfigError, DataError


@dataclass
class SFTExample:
    """One tokenized example: `ids` = prompt tokens (as the tokenizer encodes a prompt) + response + EOS."""

    ids: list[int]
    prompt_len: int  # number of prompt tokens at the start of `ids`


def encode_example(tokenizer, prompt: str, response: str) -> SFTExample:
    """Tokenize a prompt (with the tokenizer's special tokens, e.g. BOS) and its response, then append EOS."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("SFT needs a tokenizer with an eos_token (responses end with EOS)")
    p = tokenizer(prompt).input_ids
    r = tokenizer(response, add_special_tokens=False).input_ids
    return SFTExample(ids=p + r + [tokenizer.eos_token_id], prompt_len=len(p))


def collate(examples: list[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch. Returns input_ids, attention_mask and loss_mask, each [B, L]; loss_mask is 1 on the
    response tokens (the targets after the prompt, EOS included)."""
    if not examples:
        raise DataError("SFT batch is empty")
    L = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), L), dtype=torch.long)
    loss = torch.zeros((len(examples), L), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        attn[i, : len(e.ids)] = 1
        loss[i, e.prompt_len : len(e.ids)] = 1
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}


def sft_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the response tokens of the batch (token-mean).

    logits[:, t] predicts ids[:, t + 1]; a target counts when loss_mask[:, t + 1] is 1.
    """
    ids, attn, lmask = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()  # [B, L-1, V]
    targets, m = ids[:, 1:], lmask[:, 1:].float()  # [B, L-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (nll.view_as(m) * m).sum() / m.sum().clamp(min=1)


def length_bucketed_batches(examples: list[SFTExample], batch_size: int, rng: random.Random, pool: int = 16):
    """Endless stream of batches: shuffle, sort each pool of `pool` batches by length (less padding), yield
    the batches of the pool in random order."""
    if not examples:
        raise DataError("SFT data is empty")
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size * pool):
            chunk = sorted(order[start : start + batch_size * pool], key=lambda i: len(examples[i].ids))
            batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            rng.shuffle(batches)
            for b in batches:
                yield [examples[i] for i in b]


@dataclass
class SFTResult:
    """What a run of `train_sft` did."""

    steps: int
    seconds: float
    tokens: int  # response tokens trained on
    cpu_seconds: float = 0.0  # process CPU time (all threads) spent in the loop
    losses: list[float] = field(default_factory=list)  # loss of every step


def train_sft(
    model,
    examples: list[SFTExample],
    pad_id: int,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    warmup_steps: int = 50,
    min_lr_ratio: float = 0.1,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    max_seconds: float | None = None,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> SFTResult:
    """AdamW with linear warm-up and cosine decay to `min_lr_ratio * lr`; stops after `steps` or `max_seconds`."""
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"SFT {name} must be an integer >= 1, got {v!r}")
    if not lr > 0:
        raise ConfigError(f"SFT lr must be > 0, got {lr!r}")
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        frac = (step - warmup_steps) / max(1, steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    batches = length_bucketed_batches(examples, batch_size, random.Random(seed))
    res = SFTResult(steps=0, seconds=0.0, tokens=0)
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        batch = collate(next(batches), pad_id)
        loss = sft_loss(model, batch)
        if not torch.isfinite(loss):
            raise ConfigError(f"SFT loss became {loss.item()} at step {step}; lower lr (now {lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        res.losses.append(loss.item())
        res.tokens += int(batch["loss_mask"][:, 1:].sum())
        res.steps = step + 1
        if on_step is not None:
            on_step(step, res.losses[-1])
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    res.seconds = time.perf_counter() - t0
    res.cpu_seconds = time.process_time() - c0
    model.eval()
    return res
