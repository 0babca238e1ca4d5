"""Per-token policy-gradient terms. Each returns the per-token loss matrix [B, T] (to be aggregated by
`aggregation.agg_loss`) and a dict of detached 0-dim metric tensors (no `.item()` inside the loss: the caller
decides when to copy them to the host).

Inputs arrive already cleaned by `policy_loss`: `logp` and `old_logp` are 0 on padding, `adv` is [B, T]
(sequence advantages broadcast), `mask` is a float {0,1} matrix.
"""

from __future__ import annotations

import math

import torch

LOG_RATIO_CLAMP = 20.0  # |log r| is clamped to 20 before exp (as verl): ratios stay finite, gradients too


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def _ratio_metrics(r: torch.Tensor, log_r: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ratio mean/min/max over real entries, and approx KL(pi_old || pi) by Schulman's k3 estimator."""
    r, log_r, mask = r.detach(), log_r.detach(), mask.detach()
    has = mask.sum() > 0
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    big = torch.finfo(r.dtype).max
    rmin = torch.where(mask > 0, r, torch.full_like(r, big)).min()
    rmax = torch.where(mask > 0, r, torch.full_like(r, -big)).max()
    return {
        "ratio_mean": _masked_mean(r, mask),
        "ratio_min": torch.where(has, rmin, zero),
        "ratio_max": torch.where(has, rmax, zero),
        "approx_kl": _masked_mean((r - 1.0) - log_r, mask),
    }


def _clip_fracs(r, adv, mask, clip_low, clip_high) -> dict[str, torch.Tensor]:
    """Share of entries whose clipped branch is active: below 1-clip_low with A<0, above 1+clip_high with A>0."""
    r, adv = r.detach(), adv.detach()
    low = ((r < 1.0 - clip_low) & (adv < 0)).to(mask.dtype)
    high = ((r > 1.0 + clip_high) & (adv > 0)).to(mask.dtype)
    return {"clip_frac_low": _masked_mean(low, mask), "clip_frac_high": _masked_mean(high, mask)}


def _clip_shares(clipped, mask) -> dict[str, torch.Tensor]:
    """`clipped` [B, T] (1 where a token's clipped branch is active): the share of response tokens clipped
    (`clip_frac_tok`) and of responses with any token clipped (`clip_frac_seq`), so token- and sequence-level
    losses report both (a sequence-level loss clips all or none of a response's tokens)."""
    clipped = clipped.to(mask.dtype) * mask
    rows = (mask.sum(-1) > 0).to(mask.dtype)  # [B]
    return {"clip_frac_tok": clipped.sum() / mask.sum().clamp(min=1.0),
            "clip_frac_seq": ((clipped.sum(-1) > 0).to(mask.dtype) * rows).sum() / rows.sum().clamp(min=1.0)}


def _active(r, adv, clip_low, clip_high):
    r, adv = r.detach(), adv.detach()
    return ((r < 1.0 - clip_low) & (adv < 0)) | ((r > 1.0 + clip_high) & (adv > 0))


def token_log_ratio(logp, old_logp, mask):  # [B, T] -> [B, T], 0 on padding
    return torch.where(mask > 0, logp - old_logp, torch.zeros_like(logp))


def seq_log_ratio(logp, old_logp, mask):  # [B, T] -> [B]: (1/|y_i|) sum_t log r_it
    return token_log_ratio(logp, old_logp, mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def ppo_clip_term(logp, old_logp, adv, mask, *, clip_low, clip_high, dual_clip=None):
    """-min(r A, clip(r, 1-clip_low, 1+clip_high) A) per token; r = pi/pi_old. With `dual_clip` = c > 1, the
    loss of a token with A < 0 is capped at -c·A (dual-clip PPO, as verl's `clip_ratio_c`)."""
    log_r = token_log_ratio(logp, old_logp, mask).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    r = torch.exp(log_r)  # [B, T]
    loss = torch.maximum(-adv * r, -adv * r.clamp(1.0 - clip_low, 1.0 + clip_high))
    if dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip), loss)
    metrics = _ratio_metrics(r, log_r, mask) | _clip_fracs(r, adv, mask, clip_low, clip_high)
    metrics |= _clip_shares(_active(r, adv, clip_low, clip_high), mask)
    return loss, metrics


def gspo_seq_term(logp, old_logp, adv, mask, *, clip_low, clip_high):
    """Sequence-level GSPO term, broadcast to every token of the sequence.
    s_i = exp((1/|y_i|) sum_t log r_it);  l_i = -min(s_i A_i, clip(s_i, 1-clip_low, 1+clip_high) A_i)."""
    log_s = seq_log_ratio(logp, old_logp, mask).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # [B]
    s = torch.exp(log_s)
    a = adv[:, 0]  # [B] (sequence advantages, checked by the caller)
    seq_loss = torch.maximum(-a * s, -a * s.clamp(1.0 - clip_low, 1.0 + clip_high))  # [B]
    seq_mask = (mask.sum(-1) > 0).to(mask.dtype)
    metrics = _ratio_metrics(s, log_s, seq_mask) | _clip_fracs(s, a, seq_mask, clip_low, clip_high)
    metrics |= _clip_shares(_active(s, a, clip_low, clip_high)[:, None].expand_as(mask), mask)
    return seq_loss[:, None].expand_as(mask), metrics


def gspo_token_term(logp, old_logp, adv, mask, *, clip_low, clip_high):
    """GSPO-token: s_it = sg[s_i] · pi(y_it) / sg[pi(y_it)] (value s_i, gradient of a token-level ratio), so
    per-token advantages A_it are allowed; -min(s_it A_it, clip(s_it) A_it) per token."""
    log_s = seq_log_ratio(logp, old_logp, mask).detach()  # [B]
    log_sit = (logp - logp.detach() + log_s[:, None]).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # [B, T]
    sit = torch.exp(log_sit)
    loss = torch.maximum(-adv * sit, -adv * sit.clamp(1.0 - clip_low, 1.0 + clip_high))
    metrics = _ratio_metrics(sit, log_sit, mask) | _clip_fracs(sit, adv, mask, clip_low, clip_high)
    return loss, metrics


def cispo_term(logp, old_logp, adv, mask, *, clip_low, clip_high):
    """CISPO: -sg[clip(r, 1-clip_low, 1+clip_high)] · A · log pi per token (the IS weight is clipped and
    detached; every token keeps a gradient, unlike PPO clipping which zeroes it)."""
    log_r = token_log_ratio(logp, old_logp, mask).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    r = torch.exp(log_r)
    w = r.clamp(1.0 - clip_low, 1.0 + clip_high).detach()
    loss = -w * adv * logp
    metrics = _ratio_metrics(r, log_r, mask) | _clip_fracs(r, adv, mask, clip_low, clip_high)
    # CISPO clips the weight whatever the sign of A: report that share too
    metrics["clip_frac_is"] = _masked_mean(((r < 1.0 - clip_low) | (r > 1.0 + clip_high)).to(mask.dtype), mask)
    return loss, metrics


def k3_kl(logp, ref_logp, mask):
    """k3 estimator of KL(pi || pi_ref) per token: exp(ref - logp) - (ref - logp) - 1 (>= 0), 0 on padding."""
    d = torch.where(mask > 0, ref_logp - logp, torch.zeros_like(logp)).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(d) - d - 1.0


def sapo_term(logp, old_logp, adv, mask, *, clip_low, clip_high, tau_pos=1.0, tau_neg=1.05):
    """SAPO (arXiv 2511.20347): a smooth gate in place of the hard clip. Per token
    l_it = -f(r_it; tau) A_it with f(r; tau) = (4/tau)·sigmoid(tau·(r - 1)), tau = tau_pos if A > 0 else
    tau_neg. f(1) = 2/tau and f'(1) = 1 (the gradient at ratio 1 is GRPO's); f'(r) = 4·s·(1-s) decays smoothly
    as r leaves 1 instead of dropping to 0 at 1 ± eps. clip_low / clip_high are not used."""
    log_r = token_log_ratio(logp, old_logp, mask).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    r = torch.exp(log_r)  # [B, T]
    tau = torch.where(adv > 0, torch.full_like(adv, float(tau_pos)), torch.full_like(adv, float(tau_neg)))
    gate = torch.sigmoid(tau * (r - 1.0)) * (4.0 / tau)  # [B, T]
    loss = -gate * adv
    metrics = _ratio_metrics(r, log_r, mask)
    s = torch.sigmoid(tau * (r - 1.0)).detach()
    # the gate's slope relative to the unclipped ratio: 1 at r = 1, -> 0 far off-policy (the soft "clip")
    metrics["sapo_gate_slope"] = _masked_mean(4.0 * s * (1.0 - s), mask)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    metrics |= {"clip_frac_low": zero, "clip_frac_high": zero}  # no hard clip
    return loss, metrics


VESPO_LOG_W_MIN = math.log(1e-8)  # the sequence log-weight is clamped to [log 1e-8, 20] (as TRL 1.16)


def vespo_term(logp, old_logp, adv, mask, *, clip_low, clip_high, k_pos=2.0, lambda_pos=3.0, k_neg=3.0,
               lambda_neg=2.0, rollout_log_w=None):
    """VESPO (arXiv 2602.10693): REINFORCE with a detached reshaping kernel of the *sequence* importance weight
    W_i = prod_t r_it (no length normalisation): l_it = -sg[phi(W_i)]·A_i·log pi(y_it),
    phi(W) = W^k·exp(lambda·(1 - W)) (phi(1) = 1; k, lambda = k_pos, lambda_pos if A_i >= 0 else k_neg,
    lambda_neg). `rollout_log_w` [B, T] (log of the rollout-correction weights) multiplies W by
    prod_t w_it, as TRL folds its token-level IS ratio into W. clip_low / clip_high are not used."""
    log_r = token_log_ratio(logp, old_logp, mask).detach().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    seq_log = (log_r * mask).sum(-1)  # [B]
    if rollout_log_w is not None:
        seq_log = seq_log + (rollout_log_w.clamp(VESPO_LOG_W_MIN, LOG_RATIO_CLAMP) * mask).sum(-1)
    log_w = seq_log.clamp(VESPO_LOG_W_MIN, LOG_RATIO_CLAMP)  # [B]
    w = torch.exp(log_w)
    a = adv[:, 0]  # [B] sequence advantages (checked by the caller)
    pos = a >= 0
    k = torch.where(pos, torch.full_like(a, float(k_pos)), torch.full_like(a, float(k_neg)))
    lam = torch.where(pos, torch.full_like(a, float(lambda_pos)), torch.full_like(a, float(lambda_neg)))
    lam = lam.clamp(min=1e-4)
    phi = torch.exp(lam + k * log_w - lam * w).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)  # [B]
    loss = -phi[:, None] * adv * logp
    seq_mask = (mask.sum(-1) > 0).to(mask.dtype)
    metrics = _ratio_metrics(w, log_w, seq_mask)
    metrics["vespo_phi_mean"] = _masked_mean(phi.detach(), seq_mask)
    zero = torch.zeros((), dtype=w.dtype, device=w.device)
    metrics |= {"clip_frac_low": zero, "clip_frac_high": zero}  # no hard clip
    return loss, metrics
