"""Log-probabilities of given responses under a model, for the policy update (differentiable)."""

from __future__ import annotations

import torch

from lengthrl.errors import ConfigError
from lengthrl.rollout.chunked import capture_head_input, chunked_head_logprobs, plain_head, resolve_chunk
from lengthrl.rollout.hf import positions_from_mask


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, chunk_rows: int = 8,
                          chunk_tokens: int = 256) -> torch.Tensor:
    """log softmax(logits)[..., index] without materialising the full log-softmax.

    logits: [B, T, V]; index: [B, T] long. Returns [B, T] in float32. Computed as
    logits[index] - logsumexp(logits) over chunks of at most min(chunk_rows, chunk_tokens // T) sequences and
    chunk_tokens positions (views, no copy of a sliced logits tensor), so the extra memory is
    O(chunk_tokens * V) instead of O(B * T * V) (logsumexp's exp(x - max) temporary is the size of its chunk).
    """
    B, T = index.shape
    if B * T == 0:
        return logits.new_zeros(index.shape, dtype=torch.float32)
    rows = max(1, min(chunk_rows, chunk_tokens // T))  # sequences per chunk
    width = max(1, min(T, chunk_tokens))  # positions per chunk (views: a sliced logits tensor is not copied)
    out = []
    for lg_r, ix_r in zip(logits.split(rows), index.split(rows)):
        parts = []
        for lg, ix in zip(lg_r.split(width, dim=1), ix_r.split(width, dim=1)):
            lg = lg.float()
            parts.append(lg.gather(-1, ix.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lg, dim=-1))
        out.append(torch.cat(parts, dim=1))
    return torch.cat(out, dim=0)


def entropy_from_logits(logits: torch.Tensor, chunk_rows: int = 8) -> torch.Tensor:
    """Entropy of softmax(logits) per position, H = logsumexp(z) - sum_v p_v z_v. [B, T, V] -> [B, T] float32."""
    out = []
    for lg in logits.split(chunk_rows):
        lg = lg.float()
        p = torch.softmax(lg, dim=-1)
        out.append(torch.logsumexp(lg, dim=-1) - (p * lg).sum(-1))
    return torch.cat(out, dim=0)


def _check(name: str, t, shape=None, ndim=2):
    if not isinstance(t, torch.Tensor) or t.ndim != ndim:
        raise ConfigError(f"compute_logprobs: {name} must be a {ndim}-D tensor, got "
                          f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ConfigError(f"compute_logprobs: {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")


def compute_logprobs(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float = 1.0,
    return_entropy: bool = False,
    chunk_rows: int = 8,
    shared_prefix: bool = False,
    logprob_chunk: int = -1,
):
    """Per-token log-probs of the responses given the prompts, in one forward over [prompt, response].

    prompt_ids / prompt_mask: [B, P] left-padded; response_ids / response_mask: [B, T] right-padded (the
    layout of `RolloutBatch`). Only the T positions that predict response tokens get logits (the model's
    `logits_to_keep`), and the log-softmax is taken selectively. Logits are divided by `temperature` (as the
    sampler did); top-k / top-p are not applied. With `shared_prefix=True` (the trainer's choice on one process) and a Llama/Qwen2 model,
    the forward is `LeanDecoder.score_logits`: each distinct prompt (a group's G rows share one) is encoded once. Returns logp [B, T] float32 (0 where response_mask is 0),
    differentiable w.r.t. the model; with `return_entropy=True`, (logp, entropy [B, T], 0 on padding).
    `logprob_chunk` (the config key; -1 = off, the default here): the LM head and log-softmax are applied
    chunk by chunk with a recomputing backward (`lengthrl.rollout.chunked`), so the [B, T, V] logits are never
    materialised; the same values (gradients to float32 rounding). Models it does not cover (see
    `chunked.plain_head`) take the full-logits path.
    """
    _check("prompt_ids", prompt_ids)
    _check("prompt_mask", prompt_mask, prompt_ids.shape)
    _check("response_ids", response_ids)
    _check("response_mask", response_mask, response_ids.shape)
    if response_ids.shape[0] != prompt_ids.shape[0]:
        raise ConfigError(f"compute_logprobs: {prompt_ids.shape[0]} prompts but {response_ids.shape[0]} responses")
    if not temperature > 0:
        raise ConfigError(f"compute_logprobs: temperature must be > 0, got {temperature!r}")
    B, T = response_ids.shape
    dev = next(model.parameters()).device
    if T == 0:
        z = torch.zeros((B, 0), device=dev)
        return (z, z.clone()) if return_entropy else z
    head = plain_head(model)
    chunk = None if head is None else resolve_chunk(logprob_chunk, B * T, head.weight.shape[0])
    if shared_prefix and _lean_ok(model):
        from lengthrl.rollout.fast import LeanDecoder

        out = LeanDecoder(model).score_logits(prompt_ids.to(dev), prompt_mask.to(dev), response_ids.to(dev),
                                              head=chunk is None)  # [B, T, V] logits, or [B, T, H] hidden
        if chunk is not None:
            return _finish_chunked(out, head, response_ids.to(dev), response_mask.to(dev), temperature,
                                   return_entropy, chunk)
        return _finish(out, response_ids.to(dev), response_mask.to(dev), temperature, return_entropy, chunk_rows)
    ids = torch.cat([prompt_ids, response_ids], dim=1).to(dev)  # [B, P+T]
    mask = torch.cat([prompt_mask, response_mask], dim=1).to(dev)  # [B, P+T]
    pos = positions_from_mask(mask)
    if chunk is not None:  # the model's own forward, its LM head applied to no position; then the head by chunks
        with capture_head_input(head) as cap:
            model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=T + 1)
        hidden = cap.hidden[:, -T - 1:-1]  # [B, T, H]: positions P-1 .. P+T-2
        return _finish_chunked(hidden, head, response_ids.to(dev), response_mask.to(dev), temperature,
                               return_entropy, chunk)
    try:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                       logits_to_keep=T + 1).logits[:, :-1, :]  # [B, T, V]: positions P-1 .. P+T-2
    except TypeError:  # models without logits_to_keep
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -T - 1:-1, :]
    return _finish(logits, response_ids.to(dev), response_mask.to(dev), temperature, return_entropy, chunk_rows)


def lean_unsupported_reason(model, training: bool | None = None) -> str | None:
    """Why the lean decoder cannot give the differentiable forward of `model` (None when it can): the
    architecture is not covered, the model runs under torch.distributed (DDP / FSDP2 need their own forward for
    gradient sync and sharded weights), or, in training mode (`training`, default `model.training`), gradient
    checkpointing or attention dropout is on."""
    from lengthrl.models.lora import is_adapted
    from lengthrl.rollout.fast import fast_unsupported_reason

    if is_adapted(model):
        return "the model is adapted (LoRA): its training forward goes through the peft model"
    training = model.training if training is None else training
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return "the model runs under torch.distributed (DDP / FSDP2 run the model's own forward)"
    reason = fast_unsupported_reason(model)
    if reason is not None:
        return reason
    if training and getattr(model, "is_gradient_checkpointing", False):
        return "gradient checkpointing is on (the model's own forward recomputes its layers in the backward pass)"
    if training and float(getattr(model.config, "attention_dropout", 0.0) or 0.0) > 0:
        return "the model has attention dropout, which the lean decoder does not apply"
    return None


def _lean_ok(model) -> bool:
    """The lean decoder reproduces the model (architecture covered; no attention dropout while training)."""
    return lean_unsupported_reason(model) is None


def _finish_chunked(hidden, head, response_ids, rmask, temperature, return_entropy, chunk):
    """hidden [B, T, H] -> logp [B, T] (and entropy [B, T]) through the chunked head, 0 where rmask is 0."""
    logp, ent = chunked_head_logprobs(hidden, head, response_ids, temperature, chunk)
    return (logp * rmask, ent * rmask) if return_entropy else logp * rmask


def _finish(logits, response_ids, rmask, temperature, return_entropy, chunk_rows):
    """logits [B, T, V] -> logp [B, T] (and entropy [B, T]), 0 where rmask is 0."""
    if temperature != 1.0:
        logits = logits / temperature
    logp = selective_log_softmax(logits, response_ids, chunk_rows) * rmask
    if not return_entropy:
        return logp
    with torch.no_grad():  # a metric: no float32 softmax graph kept alive for the backward
        ent = entropy_from_logits(logits.detach(), chunk_rows) * rmask
    return logp, ent
