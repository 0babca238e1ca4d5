"""Building a validated TrainConfig: `build_config` parses the keys and their types (`config.parse_config`),
checks ranges (`config.check_ranges`), then checks every name against its registry and the rules that span
registries (this module, which imports the registries at the top; `config.py` imports none of them).

    from lengthrl.train.validate import build_config
    cfg = build_config("configs/luspo.toml", ["steps=20"])   # TOML file + `key=value` overrides (+ a dict)
"""

from __future__ import annotations

from pathlib import Path

from lengthrl.advantages import ADVANTAGES
from lengthrl.control import lagrange_config
from lengthrl.dllm.logprobs import ESTIMATORS
from lengthrl.errors import ConfigError
from lengthrl.models.lora import check_config as check_lora
from lengthrl.objectives import AGG_MODES, LOSSES
from lengthrl.rewards import LENGTH_REWARDS, CompositeReward
from lengthrl.rewards.python import load_rewards
from lengthrl.rollout.fast import ENGINES
from lengthrl.tasks import TASKS
from lengthrl.train import hbpo
from lengthrl.train.config import TrainConfig, check_ranges, log, parse_config
from lengthrl.train.device import (
    check_attn_implementation,
    effective_dtype_name,
    local_rank,
    resolve_device,
    resolve_dtype,
)
from lengthrl.train.distributed import check_strategy
from lengthrl.train.policy import POLICIES
from lengthrl.train.prompts import LONG_PROMPTS


def build_config(path: str | Path | None = None, overrides: list[str] | None = None,
                 extra: dict | None = None) -> TrainConfig:
    """TOML file (optional) + `key=value` overrides + a dict, validated into a TrainConfig."""
    cfg = parse_config(path, overrides, extra)
    validate(cfg)
    warn_reward_lengths(cfg)
    return cfg


def _one_of(key: str, value: str, valid, what: str, hint: str = "") -> None:
    if value not in valid:
        raise ConfigError(f"config key {key!r}: unknown {what} {value!r}; valid: {', '.join(valid)}{hint}")


def validate(cfg: TrainConfig) -> None:
    """Names against their registries, ranges, then the rules that span registries; every error names the key."""
    _one_of("policy", cfg.policy, POLICIES, "policy")
    _one_of("loss", cfg.loss, LOSSES, "loss")
    _one_of("advantage", cfg.advantage, ADVANTAGES, "estimator")
    _one_of("task", cfg.task.partition(":")[0], TASKS, "task", " (see `lengthrl tasks`)")
    _one_of("rollout_engine", cfg.rollout_engine, ENGINES, "engine")
    _one_of("dllm_logprob", cfg.dllm_logprob, ESTIMATORS, "estimator")
    _one_of("long_prompts", cfg.long_prompts, LONG_PROMPTS, "mode")
    if cfg.loss_agg_mode is not None:
        _one_of("loss_agg_mode", cfg.loss_agg_mode, AGG_MODES, "aggregation")
    check_ranges(cfg)
    check_strategy(cfg.dist_strategy, cfg.fsdp_param_dtype)
    device = resolve_device(cfg.device, local_rank())  # an error now when CUDA is asked for and missing
    resolve_dtype(effective_dtype_name(cfg.dtype, cfg.fsdp_param_dtype), device)
    check_attn_implementation(cfg.attn_implementation)
    loss = LOSSES[cfg.loss]
    if (cfg.loss_agg_mode or loss.agg_mode) == "prompt-mean" and not loss.global_norm:
        raise ConfigError(f"config key 'loss_agg_mode': 'prompt-mean' needs a loss normalised over the whole "
                          f"batch; {cfg.loss!r} normalises each micro-batch by itself (use loss = 'dapo')")
    if cfg.adv_eps is not None and "eps" not in ADVANTAGES[cfg.advantage].hparams:
        raise ConfigError(f"config key 'adv_eps': estimator {cfg.advantage!r} takes no eps (got {cfg.adv_eps!r})")
    if cfg.micro_batch_tokens > 0 and not loss.global_norm:
        raise ConfigError(f"config key 'micro_batch_tokens': loss {cfg.loss!r} normalises each micro-batch by itself, "
                          "so its objective would depend on how the lengths pack; use micro_batch_size, or loss = "
                          f"'dapo' (the same loss normalised over the mini-batch) (got {cfg.micro_batch_tokens!r})")
    if cfg.dual_clip is not None and "dual_clip" not in loss.extra_hparams:
        takers = ", ".join(n for n, s in LOSSES.items() if "dual_clip" in s.extra_hparams)
        raise ConfigError(f"config key 'dual_clip': loss {cfg.loss!r} does not take it (losses that do: {takers}); "
                          f"unset it (got {cfg.dual_clip!r})")
    check_lora(cfg)
    hbpo.check(cfg)
    lagrange_config(cfg)  # validates the length_budget* / lagrange_* keys when the controller is on
    try:
        CompositeReward.from_config(reward_terms(cfg))
    except ConfigError as e:
        raise ConfigError(f"config key 'reward': {e}") from None
    if cfg.reward_funcs:
        load_rewards(cfg.reward_funcs)  # imported now: a bad path fails before any model is loaded


def reward_terms(cfg: TrainConfig) -> list[dict]:
    """cfg.reward with each length reward's missing `max_len` set to cfg.max_new_tokens (the generation cap)
    and a missing `cache_len` (DAPO's soft-punishment interval) to max_len // 4, as a new list; the trainer
    builds its CompositeReward from this."""
    out = []
    for t in cfg.reward:
        if isinstance(t, dict) and t.get("name") in LENGTH_REWARDS and "max_len" not in t \
                and "max_len" in LENGTH_REWARDS[t["name"]].hparams:
            t = {**t, "max_len": cfg.max_new_tokens}
        if isinstance(t, dict) and t.get("name") in LENGTH_REWARDS and "cache_len" not in t \
                and "cache_len" in LENGTH_REWARDS[t["name"]].hparams and isinstance(t.get("max_len"), int):
            t = {**t, "cache_len": max(1, t["max_len"] // 4)}
        out.append(t)
    return out


def warn_reward_lengths(cfg: TrainConfig) -> list[str]:
    """Warnings (logged and returned) for length rewards whose max_len is not max_new_tokens: a cap above the
    budget never fires (no response is longer than max_new_tokens)."""
    msgs = []
    for i, t in enumerate(cfg.reward):
        if isinstance(t, dict) and "max_len" in t and t["max_len"] != cfg.max_new_tokens:
            msgs.append(f"reward term {i} ({t.get('name')}): max_len = {t['max_len']} but max_new_tokens = "
                        f"{cfg.max_new_tokens}" + ("; it can never fire" if t["max_len"] > cfg.max_new_tokens
                                                   else "") + f" (drop max_len to follow max_new_tokens, or "
                        f"--set reward.{i}.max_len=N)")
    for m in msgs:
        log.warning(m)
    return msgs
