"""lengthrl's losses and advantage estimators inside verl's registries (verl 0.9.1, an optional extra).

    import lengthrl.integrations.verl as lv
    lv.register()            # once, before verl builds its actor (e.g. at the top of your entry point)

then in the verl config: `actor_rollout_ref.actor.policy_loss.loss_mode=luspo` (or `lengthrl_<name>` for any
lengthrl loss: lengthrl_grpo, lengthrl_dr_grpo, lengthrl_dapo, lengthrl_bnpo, lengthrl_gspo,
lengthrl_gspo_token, lengthrl_luspo, lengthrl_cispo) and `algorithm.adv_estimator=lengthrl_<name>` (grpo,
dr_grpo, batch, rloo).

Losses, with verl's `PolicyLossFn` signature `(old_log_prob, log_prob, advantages, response_mask,
loss_agg_mode, config, rollout_is_weights) -> (loss, metrics)`:
- the clip range comes from verl's actor config (clip_ratio_low / clip_ratio_high, else clip_ratio);
- the aggregation is the lengthrl loss's own (luspo: seq-mean-token-sum, gspo: seq-mean-token-mean, ...),
  whatever `loss_agg_mode` verl passes: the aggregation is part of these objectives (verl's GSPO default of
  token-mean reweights sequences by length). For another aggregation, register `verl_policy_loss(name,
  agg_mode=...)` under a name of your own;
- global normalisation uses verl's `config.global_batch_info` (dp_size, batch_num_tokens,
  global_batch_size, loss_scale_factor) exactly as verl's `agg_loss` does: the loss is normalised by the
  global counts and multiplied by dp_size, because FSDP averages gradients over data-parallel ranks.

Advantage estimators, with verl's signature `(token_level_rewards [bs, T], response_mask [bs, T], index
(uids), config, **kw) -> (advantages [bs, T], returns [bs, T])`: responses are grouped by uid (in any order; the
groups must have equal sizes), scored by the summed token-level reward, passed to
`lengthrl.advantages.compute_advantages`, and broadcast over each response's tokens.

Length rewards: verl scores responses one at a time, which cannot express group- or batch-relative length
rewards; `length_reward_scores` computes any lengthrl length reward for a whole batch grouped by uid, for a
batch reward manager to add to its scores.
"""

from __future__ import annotations

import numpy as np
import torch

from lengthrl.advantages import ADVANTAGES, compute_advantages
from lengthrl.errors import ConfigError
from lengthrl.objectives import LOSSES, policy_loss
from lengthrl.rewards import length_reward

__all__ = ["register", "verl_policy_loss", "verl_adv_estimator", "length_reward_scores", "group_order",
           "LOSS_NAMES", "ADV_NAMES"]

LOSS_NAMES = {f"lengthrl_{n}": n for n in LOSSES} | {"luspo": "luspo"}  # verl name -> lengthrl name
# (hbpo needs each response's budget, which verl's estimator signature does not carry: not registered)
ADV_NAMES = {f"lengthrl_{n}": n for n, s in ADVANTAGES.items() if not s.per_response}


def _cfg_get(config, key, default=None):
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def verl_policy_loss(name: str, agg_mode: str | None = None):
    """The lengthrl loss `name` as a verl `PolicyLossFn` (see the module doc); `agg_mode` overrides the
    loss's own aggregation."""
    spec = LOSSES[name]
    mode = agg_mode or spec.agg_mode

    def loss_fn(old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor,
                response_mask: torch.Tensor, loss_agg_mode: str = "token-mean", config=None,
                rollout_is_weights: torch.Tensor | None = None):
        if rollout_is_weights is not None:
            raise ConfigError(f"verl loss lengthrl {name!r}: rollout importance-sampling weights are not supported; "
                              "turn off algorithm.rollout_correction for this loss")
        lo = _cfg_get(config, "clip_ratio_low")
        hi = _cfg_get(config, "clip_ratio_high")
        base = _cfg_get(config, "clip_ratio")
        lo = lo if lo is not None else base
        hi = hi if hi is not None else base
        info = dict(_cfg_get(config, "global_batch_info", None) or {})
        dp = int(info.get("dp_size", 1) or 1)
        mask = response_mask.to(log_prob.dtype)  # [bs, T]
        adv = advantages  # [bs, T] (verl broadcasts outcome advantages over tokens)
        if spec.level == "sequence":  # one advantage per response: the value at its first real token
            first = (mask > 0).to(torch.long).argmax(-1, keepdim=True)  # [bs, 1]
            adv = advantages.gather(-1, first).squeeze(-1)  # [bs]
        extra = {k: v for k, v in (("clip_low", lo), ("clip_high", hi)) if v is not None}
        if "dual_clip" in spec.extra_hparams and _cfg_get(config, "clip_ratio_c") is not None:
            extra["dual_clip"] = float(_cfg_get(config, "clip_ratio_c"))
        out = policy_loss(name, log_prob, old_log_prob, adv, mask, loss_agg_mode=mode,
                          num_tokens=info.get("batch_num_tokens"), num_seqs=info.get("global_batch_size"),
                          max_len=info.get("loss_scale_factor") or log_prob.shape[-1], **extra)
        loss = out.loss * dp  # FSDP averages over dp ranks; global normalisers make the average the global loss
        m = out.metrics
        metrics = {"actor/pg_clipfrac": float(m["clip_frac_high"] + m["clip_frac_low"]),
                   "actor/pg_clipfrac_lower": float(m["clip_frac_low"]), "actor/ppo_kl": float(m["approx_kl"])}
        return loss, metrics

    loss_fn.__name__ = f"lengthrl_{name}_policy_loss"
    loss_fn.__doc__ = f"lengthrl loss {name!r} ({spec.paper}): {spec.formula}"
    return loss_fn


def group_order(index) -> tuple[torch.Tensor, int]:
    """(permutation that makes the groups of equal uids contiguous, group size). Groups keep their first-seen
    order and their members' order; unequal group sizes raise a ConfigError."""
    uids = list(index.tolist() if isinstance(index, (np.ndarray, torch.Tensor)) else index)
    first: dict = {}
    for i, u in enumerate(uids):
        first.setdefault(u, []).append(i)
    sizes = {len(v) for v in first.values()}
    if len(sizes) != 1:
        raise ConfigError(f"lengthrl estimators need groups of equal size; got sizes {sorted(sizes)} "
                          "(rollout.n responses per prompt, no filtering inside a group)")
    return torch.tensor([i for v in first.values() for i in v], dtype=torch.long), sizes.pop()


def verl_adv_estimator(name: str, **hparams):
    """The lengthrl advantage estimator `name` with verl's estimator signature (see the module doc)."""
    if name not in ADVANTAGES:
        ADVANTAGES[name]  # raises UnknownNameError listing the valid names

    def adv_fn(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index=None, config=None, **kw):
        if index is None:
            raise ConfigError(f"lengthrl estimator {name!r} needs verl's uid index (responses grouped by prompt)")
        scores = token_level_rewards.sum(-1)  # [bs]
        perm, G = group_order(index)
        adv = torch.empty_like(scores)
        adv[perm] = compute_advantages(name, scores[perm], G, **hparams).to(scores.dtype)
        adv = adv[:, None] * response_mask  # [bs, T]
        return adv, adv

    adv_fn.__name__ = f"lengthrl_{name}_advantage"
    adv_fn.__doc__ = f"lengthrl advantage {name!r}: {ADVANTAGES[name].formula} ({ADVANTAGES[name].paper})"
    return adv_fn


def length_reward_scores(name: str, response_mask: torch.Tensor, index, correct, **hparams) -> torch.Tensor:
    """lengthrl length reward `name` [bs] for a verl batch: lengths from response_mask [bs, T], groups by uid
    `index`, correctness [bs] (bool or 0/1). Add it to the scores at each response's last token."""
    lengths = response_mask.sum(-1).to(torch.long)  # [bs]
    perm, G = group_order(index)
    c = torch.as_tensor(correct)[perm]
    hp = {k: (torch.as_tensor(v)[perm] if isinstance(v, (torch.Tensor, np.ndarray, list)) else v)
          for k, v in hparams.items()}
    out = torch.empty(len(lengths), dtype=torch.float32)
    out[perm] = length_reward(name, lengths[perm], c, G, **hp)
    return out


def register() -> list[str]:
    """Register every lengthrl loss and estimator in verl's registries (idempotent). Returns the names."""
    from verl.trainer.ppo import core_algos

    names = []
    for vname, ours in LOSS_NAMES.items():
        if vname not in core_algos.POLICY_LOSS_REGISTRY:
            core_algos.register_policy_loss(vname)(verl_policy_loss(ours))
        names.append(vname)
    for vname, ours in ADV_NAMES.items():
        if vname not in core_algos.ADV_ESTIMATOR_REGISTRY:
            core_algos.register_adv_est(vname)(verl_adv_estimator(ours))
        names.append(vname)
    return names
