"""AR-order rollouts of a masked diffusion LM and the policy adapter the trainer uses.

`generate_ar` fills a canvas [prompt, MASK x T] left to right, one token per forward (LLaDA with block length 1
and steps = T, the JustGRPO rollout, arXiv 2601.15165): token t is drawn from p(. | x, y_<t, MASK at t..T-1)
with temperature / top-p and the row stops at EOS. `logp` holds log softmax(logits / temperature) of the drawn
token (top-p not applied), which is exactly what `ar_logprobs` recomputes for the same response.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lengthrl.dllm.forward import logits_at
from lengthrl.dllm.logprobs import ESTIMATORS, ar_logprobs
from lengthrl.errors import ConfigError


@dataclass
class DiffusionRolloutBatch:
    """Sampled responses, n per prompt contiguous; same fields as the AR rollout batch."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P] 1 on prompt tokens
    response_ids: torch.Tensor  # [B, T] right-padded with pad
    response_mask: torch.Tensor  # [B, T] 1 on response tokens, EOS included
    logp: torch.Tensor  # [B, T] log-prob of each sampled token (0 outside response_mask)
    lengths: torch.Tensor  # [B] number of response tokens (EOS included)
    truncated: torch.Tensor  # [B] bool: no EOS within the T positions
    group_index: torch.Tensor  # [B] index of the prompt each response answers
    meta: dict = field(default_factory=dict)  # e.g. {"forwards": number of model forwards}


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """logits [b, V] with every token outside the nucleus (smallest set of probability >= top_p) set to -inf."""
    if top_p >= 1.0:
        return logits
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    drop_sorted = probs.cumsum(-1) - probs >= top_p  # tokens after the nucleus is complete
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Token ids [b] from logits [b, V]: argmax when temperature == 0, else softmax(logits / T) within top-p."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = top_p_filter(logits.float() / temperature, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


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
                temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> DiffusionRolloutBatch:
    """Left-to-right sampling, one token per forward, on a canvas of `gen_length` masks; rows stop at EOS.

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
    forwards = 0
    for t in range(T):
        rows = alive.nonzero()[:, 0]
        if rows.numel() == 0:
            break
        logits = logits_at(model, x[rows], attn[rows], torch.full((rows.numel(),), P + t, device=dev)).float()
        forwards += 1
        tok = sample_tokens(logits, temperature, top_p, generator)
        scale = temperature if temperature > 0 else 1.0
        logp[rows, t] = (logits / scale).log_softmax(-1).gather(-1, tok[:, None])[:, 0]
        x[rows, P + t] = tok
        alive[rows] = tok != eos_token_id
    resp, rmask, lengths, truncated = finish(x[:, P:], eos_token_id, pad_token_id)
    mv = lambda t: t.to(out_dev)  # noqa: E731
    return DiffusionRolloutBatch(prompt_ids=mv(pids), prompt_mask=mv(pmask), response_ids=mv(resp),
                                 response_mask=mv(rmask), logp=mv(logp * rmask), lengths=mv(lengths),
                                 truncated=mv(truncated), group_index=mv(group), meta={"forwards": forwards})


@dataclass
class DiffusionPolicy:
    """A masked diffusion LM seen as an AR policy: `generate` samples left to right, `logprobs` scores a batch
    with the chosen estimator ("exact" = `ar_logprobs`, the JustGRPO choice) on the same `gen_length` canvas
    the rollouts used, so rollout log-probs and recomputed log-probs agree."""

    model: torch.nn.Module
    mask_token_id: int
    eos_token_id: int
    pad_token_id: int
    gen_length: int
    temperature: float = 1.0
    top_p: float = 1.0
    chunk_size: int | None = None
    estimator: str = "exact"

    @classmethod
    def from_tokenizer(cls, model, tokenizer, gen_length: int, **kw) -> "DiffusionPolicy":
        """Policy with the mask, eos and pad ids taken from `tokenizer`."""
        return cls(model=model, mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id, gen_length=gen_length, **kw)

    def parameters(self):
        """The model's parameters (for the optimiser)."""
        return self.model.parameters()

    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None = None, n: int = 1, *,
                 temperature: float | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> DiffusionRolloutBatch:
        """n AR-order samples per prompt (contiguous), see `generate_ar`."""
        was_training = self.model.training
        self.model.eval()
        try:
            return generate_ar(self.model, prompt_ids, prompt_mask, mask_token_id=self.mask_token_id,
                               eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id,
                               gen_length=self.gen_length, n=n,
                               temperature=self.temperature if temperature is None else temperature,
                               top_p=self.top_p if top_p is None else top_p, generator=generator)
        finally:
            self.model.train(was_training)

    def logprobs(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, response_ids: torch.Tensor,
                 response_mask: torch.Tensor) -> torch.Tensor:
        """Log-probs [B, T] of the responses (differentiable), 0 outside `response_mask`."""
        B, T = response_ids.shape
        if T > self.gen_length:
            raise ConfigError(f"response_ids has {T} positions, more than gen_length {self.gen_length}")
        pad = self.gen_length - T  # score on the full canvas, as generated
        rids = torch.nn.functional.pad(response_ids, (0, pad), value=self.pad_token_id)
        rmask = torch.nn.functional.pad(response_mask, (0, pad), value=0)
        fn = ESTIMATORS[self.estimator]
        kw = {"chunk_size": self.chunk_size, "temperature": self.temperature or 1.0} if fn is ar_logprobs else {}
        out = fn(self.model, prompt_ids, rids, self.mask_token_id, prompt_mask=prompt_mask, response_mask=rmask, **kw)
        return out[:, :T]
