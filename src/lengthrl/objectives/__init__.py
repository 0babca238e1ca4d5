"""Policy objectives (docs/papers.md section 1): one registry, one signature, aggregation kept separate.

    out = policy_loss(name, logp, old_logp, advantages, mask, **hparams)
    out.loss     # scalar, differentiable w.r.t. logp
    out.metrics  # dict of detached 0-dim tensors: clip_frac_low/high, ratio_mean/min/max, approx_kl, ...

`logp`, `old_logp`, `mask`: float [B, T] (mask 1 on real response tokens, EOS included); `advantages`: [B] or
[B, T]. Hyperparameters: clip_low, clip_high (defaults per loss), loss_agg_mode (default per loss), max_len
(L_max of dr_grpo), beta + ref_logp (k3 KL to a reference policy), dual_clip (PPO losses), num_tokens /
num_seqs (global normalisers for gradient accumulation and several ranks: see `aggregation`), group_size /
group_tokens / num_groups (the `prompt-mean` aggregation).

Rollout/trainer mismatch correction (`rollout_is`): when the responses were sampled by another engine (vLLM,
a low-precision or fused decoder), pass its log-probs `rollout_logp` [B, T] and a mode; the per-token policy
term is multiplied by a detached weight w of pi_old / pi_rollout (before the KL term, as TRL and verl):

    token_truncate     w_it = min(exp(old_it - rollout_it), C_max)      (TIS; max(., C_min) too when given)
    token_mask         w_it = exp(old_it - rollout_it) if C_min <= . <= C_max else 0     (masked IS, IcePop)
    sequence_truncate  w_i = min(exp(sum_t (old_it - rollout_it)), C_max), on every token of response i
    sequence_mask      w_i = exp(sum_t (old_it - rollout_it)) if C_min <= . <= C_max else 0

C_max = `rollout_is_max` (default 2.0, verl's), C_min = `rollout_is_min` (default none). vespo folds the
token-level weights into its sequence weight instead (as TRL).
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch

from lengthrl.errors import ConfigError
from lengthrl.objectives.aggregation import AGG_MODES, agg_loss
from lengthrl.objectives.losses import LOSSES, LossSpec
from lengthrl.objectives.terms import LOG_RATIO_CLAMP, k3_kl
from lengthrl.registry import check_hparams

__all__ = ["policy_loss", "LossOutput", "LOSSES", "LossSpec", "agg_loss", "AGG_MODES", "COMMON_HPARAMS",
           "ROLLOUT_IS_MODES", "rollout_is_weights"]

COMMON_HPARAMS = {"clip_low", "clip_high", "loss_agg_mode", "max_len", "beta", "ref_logp", "num_tokens",
                  "num_seqs", "check_finite", "group_size", "group_tokens", "num_groups", "rollout_is",
                  "rollout_logp", "rollout_is_min", "rollout_is_max"}
ROLLOUT_IS_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    metrics: dict[str, torch.Tensor]  # detached 0-dim tensors
    per_token_loss: torch.Tensor  # [B, T] before aggregation (0 on padding)


def _check(name, logp, old_logp, advantages, mask, ref_logp, check_finite) -> None:
    for field, t in (("logp", logp), ("old_logp", old_logp), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"policy_loss({name!r}): {field} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ConfigError(f"policy_loss({name!r}): {field} must be [B, T], got shape {tuple(t.shape)}")
    if old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ConfigError(
            f"policy_loss({name!r}): logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape [B, T]"
        )
    if not logp.is_floating_point():
        raise ConfigError(f"policy_loss({name!r}): logp must be a float tensor, got {logp.dtype}")
    if not isinstance(advantages, torch.Tensor) or advantages.shape not in (logp.shape[:1], logp.shape):
        shape = tuple(advantages.shape) if isinstance(advantages, torch.Tensor) else type(advantages).__name__
        raise ConfigError(
            f"policy_loss({name!r}): advantages must be [B] = {tuple(logp.shape[:1])} or [B, T] = "
            f"{tuple(logp.shape)}, got {shape}"
        )
    if ref_logp is not None and (not isinstance(ref_logp, torch.Tensor) or ref_logp.shape != logp.shape):
        raise ConfigError(f"policy_loss({name!r}): ref_logp must be a tensor of shape {tuple(logp.shape)}")
    if check_finite:
        if not bool(torch.isfinite(advantages).all()):
            raise ConfigError(f"policy_loss({name!r}): advantages contain NaN or inf; check the rewards")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ConfigError(f"policy_loss({name!r}): mask must hold only 0 and 1")


def rollout_is_weights(
    old_logp: torch.Tensor,  # [B, T] the trainer's log-probs of the sampled tokens (pi_old)
    rollout_logp: torch.Tensor,  # [B, T] the sampler's log-probs of the same tokens
    mask: torch.Tensor,  # [B, T]
    mode: str,
    c_min: float | None = None,
    c_max: float | None = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Detached rollout-correction weights [B, T] (0 on padding) for `mode` in ROLLOUT_IS_MODES (module doc),
    and their metrics: rollout_is_mean (over tokens), rollout_is_changed_frac (tokens whose weight was
    truncated or masked), rollout_kl (k3 estimate of KL(pi_rollout || pi_old) over tokens)."""
    if mode not in ROLLOUT_IS_MODES:
        raise ConfigError(f"unknown rollout_is {mode!r}; valid: {', '.join(ROLLOUT_IS_MODES)}")
    for key, v in (("rollout_is_min", c_min), ("rollout_is_max", c_max)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or v <= 0):
            raise ConfigError(f"{key} must be a positive finite number or None, got {v!r}")
    if c_min is None and c_max is None:
        raise ConfigError("rollout_is needs rollout_is_max and/or rollout_is_min (both are None)")
    if c_min is not None and c_max is not None and c_min > c_max:
        raise ConfigError(f"rollout_is_min={c_min} must not exceed rollout_is_max={c_max}")
    real = mask > 0
    d = torch.where(real, old_logp.detach() - rollout_logp.detach().to(old_logp.dtype), torch.zeros_like(old_logp))
    d = d.nan_to_num(nan=0.0)  # a token the sampler could not score gets weight 1 (as TRL)
    if mode.startswith("token"):
        raw = torch.exp(d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))  # [B, T]
    else:
        raw = torch.exp(d.sum(-1, keepdim=True).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)).expand_as(d)  # [B, T]
    if mode.endswith("truncate"):
        w = raw.clamp(min=c_min, max=c_max)
    else:
        keep = torch.ones_like(real)
        if c_min is not None:
            keep = keep & (raw >= c_min)
        if c_max is not None:
            keep = keep & (raw <= c_max)
        w = torch.where(keep, raw, torch.zeros_like(raw))
    mf = mask.to(w.dtype)
    w = torch.where(real, w, torch.zeros_like(w))
    n = mf.sum().clamp(min=1.0)
    metrics = {
        "rollout_is_mean": (w * mf).sum() / n,
        "rollout_is_changed_frac": ((w != raw).to(w.dtype) * mf).sum() / n,
        "rollout_kl": ((torch.exp(d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)) - 1.0 - d) * mf).sum() / n,
    }
    return w, metrics


def policy_loss(
    name: str,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    **hparams,
) -> LossOutput:
    """The loss `name` of the registry `LOSSES` on a batch (see the module doc and docs/objectives.md)."""
    spec = LOSSES[name]
    check_hparams("loss", name, hparams, COMMON_HPARAMS | set(spec.extra_hparams))
    for req in spec.requires:
        if hparams.get(req) is None:
            raise ConfigError(f"loss {name!r} needs {req}=... (e.g. the maximum number of new tokens)")
    clips = {}
    for key in ("clip_low", "clip_high"):
        v = hparams.get(key) if hparams.get(key) is not None else getattr(spec, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"loss {name!r}: {key} must be a finite number >= 0, got {v!r}")
        clips[key] = float(v)
    clip_low, clip_high = clips["clip_low"], clips["clip_high"]
    mode = hparams.get("loss_agg_mode") or spec.agg_mode
    if mode not in AGG_MODES:
        raise ConfigError(f"unknown loss_agg_mode {mode!r}; valid: {', '.join(AGG_MODES)}")
    beta = float(hparams.get("beta") or 0.0)
    ref_logp = hparams.get("ref_logp")
    if beta != 0.0 and ref_logp is None:
        raise ConfigError(f"loss {name!r}: beta={beta} needs ref_logp (the reference policy's log-probs)")
    _check(name, logp, old_logp, advantages, mask, ref_logp, hparams.get("check_finite", True))

    mask = mask.to(logp.dtype)
    real = mask > 0
    # Clean padding once: whatever the caller left there (-inf, NaN) must not reach exp() or the gradient.
    logp = torch.where(real, logp, torch.zeros_like(logp))
    old_logp = torch.where(real, old_logp.detach().to(logp.dtype), torch.zeros_like(logp))
    adv = advantages.detach().to(logp.dtype)
    if adv.dim() == 2:
        if spec.level == "sequence":
            raise ConfigError(
                f"loss {name!r} takes one advantage per sequence (advantages [B]); for per-token advantages "
                "use 'gspo_token'"
            )
        adv = torch.where(real, adv, torch.zeros_like(adv))
    else:
        adv = adv[:, None].expand_as(logp)

    extra = {k: hparams[k] for k in spec.extra_hparams if hparams.get(k) is not None}
    is_w, is_metrics = None, {}
    if hparams.get("rollout_is") is not None:
        rollout_logp = hparams.get("rollout_logp")
        if not isinstance(rollout_logp, torch.Tensor) or rollout_logp.shape != logp.shape:
            raise ConfigError(f"policy_loss({name!r}): rollout_is needs rollout_logp, the sampler's log-probs, a "
                              f"tensor of shape {tuple(logp.shape)}")
        if spec.rollout_is_in_term and not hparams["rollout_is"].startswith("token"):
            raise ConfigError(f"loss {name!r} folds the rollout weights into its sequence weight: use rollout_is="
                              "'token_truncate' or 'token_mask'")
        is_w, is_metrics = rollout_is_weights(old_logp, rollout_logp, mask, hparams["rollout_is"],
                                              hparams.get("rollout_is_min"), hparams.get("rollout_is_max", 2.0))
        if spec.rollout_is_in_term:
            extra["rollout_log_w"] = torch.log(is_w)
    elif hparams.get("rollout_logp") is not None:
        raise ConfigError(f"policy_loss({name!r}): rollout_logp is given but rollout_is is not; set rollout_is to "
                          f"one of {', '.join(ROLLOUT_IS_MODES)}")
    per_token, metrics = spec.term(logp, old_logp, adv, mask, clip_low=clip_low, clip_high=clip_high, **extra)
    if is_w is not None and not spec.rollout_is_in_term:
        per_token = per_token * is_w
    metrics |= is_metrics
    if beta != 0.0:
        kl = k3_kl(logp, ref_logp.detach().to(logp.dtype), mask)
        per_token = per_token + beta * kl
        metrics["kl_ref"] = (kl.detach() * mask).sum() / mask.sum().clamp(min=1.0)
    per_token = torch.where(real, per_token, torch.zeros_like(per_token))
    loss = agg_loss(
        per_token, mask, mode,
        num_tokens=hparams.get("num_tokens") if spec.global_norm else None,
        num_seqs=hparams.get("num_seqs"),
        max_len=hparams.get("max_len"),
        group_size=hparams.get("group_size"),
        group_tokens=hparams.get("group_tokens"),
        num_groups=hparams.get("num_groups"),
    )
    metrics["tokens"] = mask.sum().detach()
    metrics["seqs"] = (mask.sum(-1) > 0).to(mask.dtype).sum().detach()
    return LossOutput(loss=loss, metrics=metrics, per_token_loss=per_token)
