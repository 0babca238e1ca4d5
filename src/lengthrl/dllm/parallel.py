"""LLaDA-style parallel decoding (arXiv 2502.09992, Algorithm 5 with semi-autoregressive blocks).

The canvas [prompt, MASK x gen_length] is split into gen_length / block_length blocks decoded left to right;
each block gets steps / num_blocks steps, and each step commits an (almost) equal share of the block's masked
positions: the model predicts every masked position (x0: argmax, or a sample at temperature > 0), and
- "low_confidence" commits the positions whose predicted token has the highest probability p(x0),
- "random" commits random positions.
With block_length = 1 and steps = gen_length this is AR greedy decoding. Each step is one forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lengthrl.dllm.forward import full_logits
from lengthrl.dllm.rollout import check_sampling, draw, finish
from lengthrl.errors import ConfigError
from lengthrl.registry import Registry

#: remasking rule -> confidence [b, n] of the predicted tokens x0 (higher = committed first)
REMASKING: Registry = Registry("remasking strategy")
REMASKING.register("low_confidence", lambda probs, x0, g: probs.gather(-1, x0[..., None])[..., 0])
REMASKING.register("random", lambda probs, x0, g: torch.rand(x0.shape, generator=g))


def num_transfer_tokens(masked: torch.Tensor, steps: int) -> torch.Tensor:
    """[b, steps] tokens to commit at each step: the masked count of each row spread evenly, remainder first."""
    total = masked.sum(1, keepdim=True)  # [b, 1]
    out = (total // steps).repeat(1, steps)
    out += torch.arange(steps)[None, :] < (total % steps)
    return out


@dataclass
class ParallelResult:
    """Output of `generate_parallel`."""

    canvas: torch.Tensor  # [B, gen_length] generated positions
    response_ids: torch.Tensor  # [B, gen_length] cut after the first EOS, right-padded with pad
    response_mask: torch.Tensor  # [B, gen_length]
    lengths: torch.Tensor  # [B] response tokens, EOS included
    truncated: torch.Tensor  # [B] no EOS
    forwards: int  # model forwards used

    @property
    def forwards_per_token(self) -> float:
        """forwards / gen_length (1.0 for AR-order decoding)."""
        return self.forwards / self.canvas.shape[1]


@torch.no_grad()
def generate_parallel(model: torch.nn.Module, prompt_ids: torch.Tensor, gen_length: int, steps: int,
                      block_length: int, remasking: str = "low_confidence", temperature: float = 0.0, *,
                      mask_token_id: int, eos_token_id: int, pad_token_id: int,
                      prompt_mask: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> ParallelResult:
    """Decode `gen_length` tokens after `prompt_ids` [B, P] in `steps` forwards (see module docstring)."""
    check_sampling(temperature, 1.0, gen_length)
    confidence_fn = REMASKING[remasking]
    if block_length < 1 or gen_length % block_length:
        raise ConfigError(f"block_length {block_length} must divide gen_length {gen_length}")
    num_blocks = gen_length // block_length
    if steps < num_blocks or steps % num_blocks:
        raise ConfigError(f"steps {steps} must be a multiple of the number of blocks {num_blocks} "
                          f"(gen_length / block_length)")
    per_block = steps // num_blocks
    if per_block > block_length:
        raise ConfigError(f"steps per block {per_block} exceeds block_length {block_length}; lower steps")
    B, P = prompt_ids.shape
    x = torch.cat([prompt_ids, torch.full((B, gen_length), mask_token_id, dtype=torch.long)], 1)
    pm = torch.ones_like(prompt_ids) if prompt_mask is None else prompt_mask.long()
    attn = torch.cat([pm, torch.ones(B, gen_length, dtype=torch.long)], 1)
    forwards = 0
    for blk in range(num_blocks):
        lo, hi = P + blk * block_length, P + (blk + 1) * block_length
        plan = num_transfer_tokens(x[:, lo:hi] == mask_token_id, per_block)  # [B, per_block]
        for i in range(per_block):
            masked = x == mask_token_id  # [B, n]
            logits = full_logits(model, x, attn).double()  # [B, n, V]
            forwards += 1
            x0 = draw(logits.reshape(-1, logits.shape[-1]), temperature, 1.0, generator).view(B, -1)
            conf = confidence_fn(logits.softmax(-1), x0, generator).double()  # [B, n]
            conf[:, hi:] = float("-inf")
            conf = torch.where(masked, conf, float("-inf"))
            for b in range(B):
                k = int(plan[b, i])
                if k:
                    pos = conf[b].topk(k).indices
                    x[b, pos] = x0[b, pos]
    canvas = x[:, P:]
    resp, rmask, lengths, truncated = finish(canvas, eos_token_id, pad_token_id)
    return ParallelResult(canvas=canvas, response_ids=resp, response_mask=rmask, lengths=lengths,
                          truncated=truncated, forwards=forwards)
