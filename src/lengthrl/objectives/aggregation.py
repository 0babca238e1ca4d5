"""Token aggregation: turn a per-token loss matrix into the scalar that is differentiated.

Kept apart from the per-token terms (as verl's `agg_loss`), because the aggregation is where the length bias
of an objective lives. Every mode is available to every loss; each loss has a default (see `losses.py`).

Modes (mask m_it in {0,1}, per-token loss l_it, B' = number of sequences with at least one real token,
T_tot = sum of the mask):

    token-mean               sum_it m l / T_tot                           (DAPO, CISPO, BNPO)
    token-sum                sum_it m l
    seq-mean-token-sum       (1/B') sum_i sum_t m l                        (LUSPO)
    seq-mean-token-mean      (1/B') sum_i (sum_t m l / |y_i|)              (GRPO, GSPO)
    seq-mean-token-sum-norm  (1/B') sum_i sum_t m l / L_max                (Dr. GRPO; L_max = `max_len`)

Global normalisers: pass `num_tokens` (T_tot) and/or `num_seqs` (B') of the whole (global) batch when this call
sees only a micro-batch or one rank's share. Then the sum over micro-batches (and ranks) of the returned losses
equals the loss of the whole batch: gradient accumulation needs no extra division.

A fully masked row contributes nothing and is not counted in B' (as verl does; TRL's `.mean()` counts it).
"""

from __future__ import annotations

import torch

from lengthrl.errors import ConfigError

AGG_MODES = (
    "token-mean",
    "token-sum",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)


def _as_tensor(x, like: torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=like.dtype, device=like.device)


def agg_loss(
    loss_mat: torch.Tensor,  # [B, T] per-token loss
    mask: torch.Tensor,  # [B, T] 1 on real response tokens
    mode: str,
    *,
    num_tokens: torch.Tensor | float | None = None,  # global T_tot (token-mean)
    num_seqs: torch.Tensor | float | None = None,  # global B' (seq-mean-*)
    max_len: float | None = None,  # L_max (seq-mean-token-sum-norm)
) -> torch.Tensor:
    """Aggregate `loss_mat` [B, T] over the real tokens in `mask` into a scalar, by `mode` (see module doc)."""
    mask = mask.to(loss_mat.dtype)
    # where() instead of multiply: a masked position holding inf/NaN must not leak into the sum
    masked = torch.where(mask > 0, loss_mat, torch.zeros_like(loss_mat))
    if mode == "token-mean":
        denom = mask.sum() if num_tokens is None else _as_tensor(num_tokens, loss_mat)
        return masked.sum() / denom.clamp(min=1.0)
    if mode == "token-sum":
        return masked.sum()
    seq_tokens = mask.sum(-1)  # [B]
    if mode == "seq-mean-token-mean":
        seq_loss = masked.sum(-1) / seq_tokens.clamp(min=1.0)  # [B]
    elif mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
        seq_loss = masked.sum(-1)  # [B]
    else:
        raise ConfigError(f"unknown loss_agg_mode {mode!r}; valid: {', '.join(AGG_MODES)}")
    denom = (seq_tokens > 0).to(loss_mat.dtype).sum() if num_seqs is None else _as_tensor(num_seqs, loss_mat)
    loss = seq_loss.sum() / denom.clamp(min=1.0)
    if mode == "seq-mean-token-sum-norm":
        if max_len is None:
            raise ConfigError(
                "loss_agg_mode 'seq-mean-token-sum-norm' needs max_len (the constant L_max, e.g. the maximum "
                "number of new tokens); pass max_len=..."
            )
        loss = loss / float(max_len)
    return loss
