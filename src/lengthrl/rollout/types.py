"""Rollout types: sampling parameters, the batch of sampled responses, and the engine interface.

The trainer sees only `RolloutEngine.generate(...) -> RolloutBatch`, so another in-process engine can replace the
default transformers engine. An engine in another process (e.g. a GPU inference server) would also need the
trainer's new weights after every update; this interface has no weight-sync method yet, so that needs more than
a new engine class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import torch

from lengthrl.errors import ConfigError


@dataclass(frozen=True)
class SamplingParams:
    """How to sample responses.

    temperature: logits are divided by it; 0 means greedy (argmax).
    top_p: nucleus sampling, keep the smallest set of tokens whose probability reaches top_p (1 = off).
    top_k: keep the k most likely tokens (0 = off).
    max_new_tokens: response budget in tokens, EOS included; a response without EOS by then is truncated.
    seed: when set, this call samples from a fresh generator seeded with it (reproducible per call);
        otherwise the engine's own generator continues (reproducible per sequence of calls).
    ignore_eos: never sample an EOS token (its probability is set to 0 and the rest renormalised), so every
        response is exactly max_new_tokens long and truncated; for fixed-length benchmarks (transformers'
        `min_new_tokens = max_new_tokens` does the same).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 128
    seed: int | None = None
    ignore_eos: bool = False

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"sampling temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ConfigError(f"sampling top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ConfigError(f"sampling top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise ConfigError(f"sampling max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")

    @property
    def greedy(self) -> bool:
        """True when sampling reduces to argmax (temperature 0 or top_k 1)."""
        return self.temperature == 0 or self.top_k == 1


@dataclass
class RolloutBatch:
    """Sampled responses, B = number of prompts x n; the n samples of a prompt are contiguous rows.

    logp holds the sampling policy's log-probabilities of the sampled tokens: those of the distribution actually
    sampled from (logits / temperature, then top-k / top-p renormalised); under greedy decoding, those of the
    untempered model. At temperature 1 without top-k/top-p they equal `compute_logprobs` on the same batch.
    """

    prompt_ids: torch.Tensor  # [B, P] long, left-padded with pad_id
    prompt_mask: torch.Tensor  # [B, P] long, 1 on real prompt tokens
    response_ids: torch.Tensor  # [B, T] long, right-padded with pad_id after the EOS; T = longest response
    # (an engine's batch; the diffusion sampler `generate_ar` returns its whole canvas)
    response_mask: torch.Tensor  # [B, T] long, 1 on real response tokens INCLUDING the EOS (the positions
    # trained on; the diffusion engine with justgrpo_loss = 'official': the whole canvas, post-EOS tokens too)
    logp: torch.Tensor  # [B, T] float32, log-prob of each sampled token, 0 on padding
    lengths: torch.Tensor  # [B] long, response length in tokens (EOS included) = response_mask.sum(1)
    truncated: torch.Tensor  # [B] bool, hit max_new_tokens without emitting EOS
    group_index: torch.Tensor  # [B] long, index of the prompt (in the list given to generate) of each row

    def __post_init__(self):
        b = self.prompt_ids.shape[0]
        for f in fields(self):
            t = getattr(self, f.name)
            if not isinstance(t, torch.Tensor) or t.shape[0] != b:
                raise ConfigError(f"RolloutBatch.{f.name} must be a tensor with {b} rows (one per response)")
        if self.response_mask.shape != self.response_ids.shape or self.logp.shape != self.response_ids.shape:
            raise ConfigError("RolloutBatch.response_mask and .logp must have the shape of .response_ids [B, T]")
        if self.prompt_mask.shape != self.prompt_ids.shape:
            raise ConfigError("RolloutBatch.prompt_mask must have the shape of .prompt_ids [B, P]")

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]

    @property
    def num_groups(self) -> int:
        """Number of prompts (groups)."""
        return int(self.group_index.max().item()) + 1 if len(self) else 0

    def response_token_lists(self) -> list[list[int]]:
        """Each response's token ids (EOS included, padding excluded)."""
        return [row[: int(n)].tolist() for row, n in zip(self.response_ids, self.lengths)]

    def texts(self, tokenizer, skip_special_tokens: bool = True) -> list[str]:
        """Decoded responses (EOS and padding dropped by default)."""
        return tokenizer.batch_decode(self.response_token_lists(), skip_special_tokens=skip_special_tokens)

    def select(self, rows: torch.Tensor | list[int]) -> "RolloutBatch":
        """A new batch with only `rows` (e.g. the groups kept by dynamic sampling)."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return RolloutBatch(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to(self, device: str | torch.device) -> "RolloutBatch":
        """The batch on `device`."""
        return RolloutBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@runtime_checkable
class RolloutEngine(Protocol):
    """Anything that samples `n` responses per prompt (prompts as token ids) and returns a `RolloutBatch`."""

    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> RolloutBatch:
        """Sample n responses for each prompt; rows of a prompt are contiguous, in the order of `prompt_ids`."""
        ...
