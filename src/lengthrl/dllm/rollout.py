"""AR-order rollouts of a masked diffusion LM (the rollouts of the trainer's ``diffusion`` policy).

`generate_ar` fills a canvas [prompt, MASK x T] left to right, one token per forward (LLaDA with block length 1
and steps = T, the JustGRPO rollout, arXiv 2601.15165): token t is drawn from p(. | x, y_<t, MASK at t..T-1)
with temperature / top-p (the sampler of `lengthrl.rollout.sampling`) and the row stops at EOS. `logp` holds
log softmax(logits / temperature) of the drawn token (top-p not applied), which is exactly what `ar_logprobs`
recomputes for the same response.
"""

from __future__ import annotations

import torch

from lengthrl.dllm.forward import logits_at
from lengthrl.errors import ConfigError
from lengthrl.rollout.sampling import sample_tokens, sampling_logprobs
from lengthrl.rollout.types import RolloutBatch, SamplingParams


def draw(logits: torch.Tensor, temperature: float, top_p: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Token ids [b] from logits [b, V] with the rollout sampler: argmax when temperature == 0, else
    softmax(logits / temperature) within top-p."""
    params = SamplingParams(temperature=temperature, top_p=top_p)
    return sample_tokens(sampling_logprobs(logits, params), params, generator)


def check_sampling(temperature: float, top_p: float, gen_length: int) -> None:
    """ConfigError for a negative temperature, top_p outside (0, 1] or gen_length < 1."""
    if not temperature >= 0:
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if gen_length < 1:
        raise ConfigError(f"gen_length must be >= 1, got {gen_length}")


def finish(canvas: torch.Tensor, eos_token_id: int, pad_token_id: int):
    """(response_ids, response_mask, lengths, truncated) from generated canvas rows [B, T]: cut after first EOS."""
    B, T = canvas.shape
    is_eos = canvas == eos_token_id
    has = is_eos.any(1)
    dev = canvas.device
    first = torch.where(has, is_eos.float().argmax(1), torch.full((B,), T - 1, device=dev))
    lengths = torch.where(has, first + 1, torch.full((B,), T, device=dev))
    mask = torch.arange(T, device=dev)[None, :] < lengths[:, None]
    return torch.where(mask, canvas, pad_token_id), mask.long(), lengths, ~has


def repeat_prompts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, n: int):
    """Each prompt row n times, contiguous; also the group index [B*n]."""
    if n < 1:
        raise ConfigError(f"n (samples per prompt) must be >= 1, got {n}")
    pm = torch.ones_like(prompt_ids) if prompt_mask is None else prompt_mask.long()
    return (prompt_ids.repeat_interleave(n, 0), pm.repeat_interleave(n, 0),
            torch.arange(prompt_ids.shape[0], device=prompt_ids.device).repeat_interleave(n))


@torch.no_grad()
def generate_ar(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, *,
                mask_token_id: int, eos_token_id: int, pad_token_id: int, gen_length: int, n: int = 1,
                temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
                stop_at_eos: bool = True) -> RolloutBatch:
    """Left-to-right sampling, one token per forward, on a canvas of `gen_length` masks; rows stop at EOS.
    Returns the whole canvas: response_ids [B = prompts x n, gen_length] (the engine trims it to the longest
    response); the number of forwards made is ``int(lengths.max())`` (a row stops after its EOS).
    stop_at_eos=False: every canvas position is sampled (the official JustGRPO rollout, LLaDA with steps =
    gen_length); response_ids then keep the tokens drawn after the first EOS and response_mask is 1 on the whole
    canvas (the positions trained on), while lengths, truncated and the texts still end at the first EOS.

    The canvas, masks and log-probs live on the model's device while sampling (`generator` must be there
    too); the batch is returned on the device of `prompt_ids`."""
    check_sampling(temperature, top_p, gen_length)
    out_dev = prompt_ids.device
    p0 = next(model.parameters(), None)
    dev = out_dev if p0 is None else p0.device
    pids, pmask, group = repeat_prompts(prompt_ids.to(dev), None if prompt_mask is None else prompt_mask.to(dev), n)
    B, P = pids.shape
    T = gen_length
    x = torch.cat([pids, torch.full((B, T), mask_token_id, dtype=torch.long, device=dev)], 1)  # [B, P+T]
    attn = torch.cat([pmask, torch.ones(B, T, dtype=torch.long, device=dev)], 1)
    logp = torch.zeros(B, T, device=dev)
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    for t in range(T):
        rows = alive.nonzero()[:, 0]
        if rows.numel() == 0:
            break
        logits = logits_at(model, x[rows], attn[rows], torch.full((rows.numel(),), P + t, device=dev)).float()
        tok = draw(logits, temperature, top_p, generator)
        scale = temperature if temperature > 0 else 1.0
        logp[rows, t] = (logits / scale).log_softmax(-1).gather(-1, tok[:, None])[:, 0]
        x[rows, P + t] = tok
        if stop_at_eos:
            alive[rows] = tok != eos_token_id
    resp, rmask, lengths, truncated = finish(x[:, P:], eos_token_id, pad_token_id)
    if not stop_at_eos:
        resp, rmask = x[:, P:].clone(), torch.ones_like(rmask)
    mv = lambda t: t.to(out_dev)  # noqa: E731
    return RolloutBatch(prompt_ids=mv(pids), prompt_mask=mv(pmask), response_ids=mv(resp), response_mask=mv(rmask),
                        logp=mv(logp * rmask), lengths=mv(lengths), truncated=mv(truncated), group_index=mv(group))
