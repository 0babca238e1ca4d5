"""HBPO in the trainer (Hierarchical Budget Policy Optimization, arXiv 2507.15844): each group of G responses is
cut into k = len(hbpo_budgets) equal sub-groups; sub-group i is sampled from the prompt rewritten with budget b_i
(`hbpo_prompt`), its responses carry b_i as their `target` (the `hbpo` reward, eqs. 1-3) and as the `budget`
of the `hbpo` advantage (Algorithm 1: within- plus across-budget terms).

Rows stay groups-contiguous: prompt p's G rows are its k sub-groups in budget order, G/k rows each, exactly
`lengthrl.rewards.hbpo_budgets(N, G, budgets)`.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from lengthrl.errors import ConfigError
from lengthrl.rewards import hbpo_budgets
from lengthrl.tasks.base import Sample


def check(cfg) -> None:
    """ConfigErrors for the hbpo_* keys (and advantage = 'hbpo' without them)."""
    b = cfg.hbpo_budgets
    if not b:
        if cfg.advantage == "hbpo":
            raise ConfigError("config key 'advantage': 'hbpo' needs the budget sub-groups; set hbpo_budgets, e.g. "
                              "hbpo_budgets = [16, 32, 64, 128]")
        return
    if any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in b):
        raise ConfigError(f"config key 'hbpo_budgets': budgets are positive token counts (integers), got {b!r}")
    if cfg.group_size % len(b):
        raise ConfigError(f"config key 'hbpo_budgets': {len(b)} budgets do not split group_size = {cfg.group_size} "
                          f"into equal sub-groups; use a group_size divisible by {len(b)}")
    if max(b) > cfg.max_new_tokens:
        raise ConfigError(f"config key 'hbpo_budgets': budget {max(b)} is above max_new_tokens = "
                          f"{cfg.max_new_tokens}; no response can use it (lower it or raise max_new_tokens)")
    if cfg.policy != "ar":
        raise ConfigError("config key 'hbpo_budgets': budget sub-groups run with policy = 'ar'")
    try:
        text = cfg.hbpo_prompt.format(prompt="P", budget=7)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"config key 'hbpo_prompt': not a format string of {{prompt}} and {{budget}} ({e!r})") \
            from None
    if "P" not in text or "7" not in text or "{prompt}" not in cfg.hbpo_prompt or "{budget}" not in cfg.hbpo_prompt:
        raise ConfigError("config key 'hbpo_prompt': must contain {prompt} and {budget}")


def budget_samples(samples: list[Sample], cfg) -> list[Sample]:
    """[len(samples) · k] samples: each sample with its prompt under each budget (and that budget as its
    target_len), in budget order; the trainer encodes them as it encodes the task's prompts."""
    return [replace(s, prompt=cfg.hbpo_prompt.format(prompt=s.prompt, budget=b), target_len=b)
            for s in samples for b in cfg.hbpo_budgets]


def row_budgets(n_rows: int, cfg) -> torch.Tensor:
    """[n_rows] float64: the budget each response was sampled with."""
    return hbpo_budgets(n_rows, cfg.group_size, cfg.hbpo_budgets)


def advantage_hparams(cfg, terms: list[dict]) -> dict:
    """max_len and beta of the `hbpo` advantage: those of the config's `hbpo` reward term (its f2(b) is the
    baseline the intra-budget term subtracts), else L_max = max_new_tokens and the paper's beta = 4."""
    term = next((t for t in terms if isinstance(t, dict) and t.get("name") == "hbpo"), {})
    return {"max_len": float(term.get("max_len", cfg.max_new_tokens)), "beta": float(term.get("beta", 4.0))}


def budget_metrics(lengths: torch.Tensor, correct: torch.Tensor, budgets: torch.Tensor, cfg) -> dict[str, float]:
    """hbpo/len_b{b} (mean length), hbpo/acc_b{b} and hbpo/within_b{b} (fraction with length <= b) of the
    responses sampled under each budget b; lengths, correct, budgets: [N]."""
    m = {}
    for b in cfg.hbpo_budgets:
        sel = budgets == b
        L = lengths[sel].float()
        m[f"hbpo/len_b{b}"] = float(L.mean())
        m[f"hbpo/acc_b{b}"] = float(correct[sel].float().mean())
        m[f"hbpo/within_b{b}"] = float((L <= b).float().mean())
    return m
