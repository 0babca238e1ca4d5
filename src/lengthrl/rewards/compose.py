"""Composite rewards: a weighted sum of terms (task correctness, format, length terms), with the per-term
values kept for metrics. Built from a plain list of dicts, e.g.

    CompositeReward.from_config([
        {"name": "correct", "weight": 1.0},
        {"name": "format", "weight": 0.5},
        {"name": "dapo_overlong", "weight": 0.3, "max_len": 64, "cache_len": 16},
    ])

(the LUSPO recipe: accuracy + 0.5 format + 0.3 soft overlong)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lengthrl.errors import ConfigError
from lengthrl.rewards._checks import as_correct, as_lengths, as_values, check_group_size
from lengthrl.rewards.registry import LENGTH_REWARDS, length_reward
from lengthrl.rewards.stateful import STATEFUL_REWARDS, StatefulLengthReward

BASE_TERMS = {
    "correct": "task reward: `task_reward` if given (e.g. partial credit), else the correctness flag c",
    "format": "format reward: the `format_ok` flag (1 if the response follows the template)",
    "constant": "1 for every response: an offset set by its weight (JustGRPO's +1/-1, arXiv 2601.15165: correct "
                "weight 2 + constant weight -1)",
}
# Hyperparameters that are naturally per-sample and may be supplied at call time instead of in the config.
CALL_TIME = {"target", "lo", "hi", "truncated"}


def term_names() -> list[str]:
    """Every name a term may have: the base terms and every registered length reward."""
    return [*BASE_TERMS, *LENGTH_REWARDS.names()]


@dataclass
class RewardSpec:
    """One term of a composite reward: a name, a weight and the term's hyperparameters."""

    name: str
    weight: float = 1.0
    hparams: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: object, index: int = 0) -> RewardSpec:
        """Validate one config entry; errors name the term (by index and name) and the key."""
        where = f"reward term #{index}"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a dict like {{'name': 'dler', 'weight': 1.0, ...}}, got {d!r}")
        if "name" not in d:
            raise ConfigError(f"{where}: missing key 'name'; valid names: {', '.join(term_names())}")
        name = d["name"]
        if name not in BASE_TERMS and name not in LENGTH_REWARDS:
            raise ConfigError(f"{where}: unknown reward {name!r}; valid names: {', '.join(term_names())}")
        weight = d.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"{where} ({name}): key 'weight' = {weight!r}; pass a finite number")
        hp = {k: v for k, v in d.items() if k not in ("name", "weight")}
        spec = cls(name, float(weight), hp)
        spec.validate(where)
        return spec

    def validate(self, where: str = "reward term") -> None:
        if self.name in BASE_TERMS:
            if self.hparams:
                raise ConfigError(f"{where} ({self.name}): takes no hyperparameters, got key(s) {', '.join(sorted(self.hparams))}")
            return
        spec = LENGTH_REWARDS[self.name]
        if spec.kind == "advantage":
            raise ConfigError(
                f"{where} ({self.name}): gives advantage-like weights, not a reward; use it in place of the "
                f"advantages (length_reward({self.name!r}, ...) or the {self.name.upper()} object), not as a reward term"
            )
        fed = STATEFUL_REWARDS[self.name].state_fed if self.name in STATEFUL_REWARDS else set()
        bad = sorted(set(self.hparams) - (spec.hparams - fed))
        if bad:
            raise ConfigError(
                f"{where} ({self.name}): unknown key(s) {', '.join(bad)}; valid: "
                f"name, weight, {', '.join(sorted(spec.hparams - fed))}"
            )
        missing = sorted(spec.required - set(self.hparams) - CALL_TIME - fed)
        if missing:
            raise ConfigError(f"{where} ({self.name}): missing key(s) {', '.join(missing)}")


class CompositeReward:
    """Weighted sum of reward terms. `__call__` returns (total [N], {term key: raw [N] values})."""

    def __init__(self, terms: list[RewardSpec]):
        if not terms:
            raise ConfigError("a composite reward needs at least one term, e.g. [{'name': 'correct'}]")
        for i, t in enumerate(terms):
            t.validate(f"reward term #{i}")
        self.terms = list(terms)
        self.keys = self._keys()
        self.stateful: dict[str, StatefulLengthReward] = {
            key: STATEFUL_REWARDS[t.name](**t.hparams)
            for key, t in zip(self.keys, self.terms) if t.name in STATEFUL_REWARDS
        }

    def _keys(self) -> list[str]:
        keys, seen = [], {}
        for t in self.terms:
            seen[t.name] = seen.get(t.name, 0) + 1
            keys.append(t.name if seen[t.name] == 1 else f"{t.name}_{seen[t.name]}")
        return keys

    @classmethod
    def from_config(cls, config: object) -> CompositeReward:
        """From a list of term dicts, or a dict {"terms": [...]}."""
        if isinstance(config, dict):
            if "terms" not in config:
                raise ConfigError("reward config dict needs a 'terms' list")
            config = config["terms"]
        if not isinstance(config, (list, tuple)):
            raise ConfigError(f"reward config must be a list of term dicts, got {type(config).__name__}")
        return cls([RewardSpec.from_dict(d, i) for i, d in enumerate(config)])

    def __call__(self, lengths, correct, group_size: int, *, format_ok=None, task_reward=None,
                 prompt_ids=None, **per_sample) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """lengths [N], correct [N]; `format_ok` [N] for a format term, `task_reward` [N] to replace c in the
        correct term, `prompt_ids` for HAPO, and per-sample inputs (target=, lo=, hi=, truncated=)
        given to every term that takes them. Returns (total [N] float32, per-term raw values [N] float32)."""
        L = as_lengths(lengths)
        n = L.numel()
        c = as_correct(correct, n)
        g = check_group_size(n, group_size)
        used = {k for t in self.terms if t.name in LENGTH_REWARDS for k in LENGTH_REWARDS[t.name].hparams}
        used -= {k for obj in self.stateful.values() for k in obj.state_fed}
        unused = set(per_sample) - used
        if unused:
            raise ConfigError(f"per-sample input(s) {', '.join(sorted(unused))} are used by no term of this reward")
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros(n, dtype=torch.float64)
        for key, t in zip(self.keys, self.terms):
            if t.name == "correct":
                v = c if task_reward is None else as_values(task_reward, n, "task_reward")
            elif t.name == "format":
                if format_ok is None:
                    raise ConfigError("the 'format' term needs format_ok=[N] flags in the call")
                v = as_correct(format_ok, n, "format_ok")
            elif t.name == "constant":
                v = torch.ones(n, dtype=torch.float64)
            elif key in self.stateful:
                v = self.stateful[key](L, c, g, prompt_ids=prompt_ids).to(torch.float64)
            else:
                spec = LENGTH_REWARDS[t.name]
                hp = {**{k: per_sample[k] for k in spec.hparams if k in per_sample}, **t.hparams}
                spec.check(hp, where=f"reward term {key}: ")
                v = length_reward(t.name, L, c, g, **hp).to(torch.float64)
            parts[key] = v.to(torch.float32)
            total = total + t.weight * v
        return total.to(torch.float32), parts

    def state_dict(self) -> dict:
        """States of the stateful terms (HAPO history, ...), keyed by term key."""
        return {k: obj.state_dict() for k, obj in self.stateful.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, obj in self.stateful.items():
            if k in state:
                obj.load_state_dict(state[k])
