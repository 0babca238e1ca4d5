"""Turn next-token logits into the sampling distribution (temperature, top-k, top-p) and draw from it."""

from __future__ import annotations

import torch

from lengthrl.rollout.types import SamplingParams


def sampling_logprobs(logits: torch.Tensor, params: SamplingParams, banned: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probabilities of the distribution sampled from; -inf on tokens cut by top-k / top-p.

    logits: [B, V]. Returns [B, V] float32 (float64 for float64 logits). Under greedy decoding the untempered log-softmax is returned.
    banned: token ids [k] never to sample (their logits set to -inf first), e.g. the EOS ids under `ignore_eos`.
    Top-p (Holtzman et al. 2019, arXiv 1904.09751): keep the smallest prefix of the sorted distribution whose
    mass reaches p (the most likely token is always kept); top-k applies before top-p, as in transformers.
    """
    x = logits if logits.dtype == torch.float64 else logits.float()
    if banned is not None:
        x = x.index_fill(-1, banned, float("-inf"))
    if params.greedy:
        return torch.log_softmax(x, dim=-1)
    x = x / params.temperature
    if params.top_k and params.top_k < x.shape[-1]:
        kth = torch.topk(x, params.top_k, dim=-1).values[:, -1:]  # [B, 1]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)  # [B, V]
        probs = torch.softmax(sorted_x, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of the strictly more likely tokens
        cut_sorted = mass_before >= params.top_p
        cut = torch.zeros_like(cut_sorted).scatter(-1, order, cut_sorted)
        x = x.masked_fill(cut, float("-inf"))
    return torch.log_softmax(x, dim=-1)


def sample_tokens(logprobs: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Draw one token per row from `logprobs` [B, V] (argmax when greedy). Returns [B] long."""
    if params.greedy:
        return logprobs.argmax(dim=-1)
    return torch.multinomial(logprobs.exp(), 1, generator=generator).squeeze(-1)
