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
    prompt-mean              (1/P) sum_p (1/T_p) sum_{i in p} sum_t m l    (SkyRL, AReaL, ScaleRL)

prompt-mean: P = prompt groups with at least one real token, T_p = the real tokens of group p's responses. Each
prompt weighs the same whatever its responses' lengths; inside a group every token weighs the same (a token of
response i gets A_i / (P·T_p) at ratio 1). The groups come from `group_size` (contiguous groups of that many
rows) or `group_tokens` ([B]: T_p of each row's group, e.g. counted over the whole mini-batch when this call
sees a micro-batch), with `num_groups` the global P.

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
    "prompt-mean",
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
    group_size: int | None = None,  # prompt-mean: contiguous groups of this many rows
    group_tokens: torch.Tensor | None = None,  # [B] prompt-mean: T_p of each row's group (global counts)
    num_groups: torch.Tensor | float | None = None,  # global P (prompt-mean)
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
    if mode == "prompt-mean":
        return _prompt_mean(masked, seq_tokens, group_size, group_tokens, num_groups)
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


def _prompt_mean(masked, seq_tokens, group_size, group_tokens, num_groups) -> torch.Tensor:
    """(1/P) sum_p (1/T_p) sum_{i in p} sum_t m l (see the module doc). masked, [B, T]; seq_tokens [B]."""
    B = masked.shape[0]
    if group_tokens is None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 or B % group_size:
            raise ConfigError(
                f"loss_agg_mode 'prompt-mean' needs group_size=G (a positive integer dividing the {B} rows, the "
                f"responses per prompt, groups contiguous) or group_tokens=[B]; got group_size={group_size!r}"
            )
        group_tokens = seq_tokens.view(-1, group_size).sum(-1).repeat_interleave(group_size)  # [B]
    elif not isinstance(group_tokens, torch.Tensor) or group_tokens.shape != (B,):
        raise ConfigError(f"loss_agg_mode 'prompt-mean': group_tokens must be a tensor of shape ({B},)")
    group_tokens = group_tokens.to(masked.dtype).clamp(min=1.0)
    row = masked.sum(-1) / group_tokens  # [B]: each row's share of its group's token-mean
    # the groups in this call: each group's rows' token shares |y_i| / T_p add up to 1
    denom = (seq_tokens / group_tokens).sum() if num_groups is None else _as_tensor(num_groups, masked)
    return row.sum() / denom.clamp(min=1.0)
