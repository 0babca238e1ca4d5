"""Length rewards that carry state across training steps (saved and restored with checkpoints):
HAPO's per-prompt history, and GRPO-lambda / DRPO objects that keep running statistics.

All share the call `obj(lengths, correct, group_size, prompt_ids=None) -> [N]` and
`state_dict()` / `load_state_dict()` with plain Python values (JSON- and torch.save-friendly)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lengthrl.errors import ConfigError, DataError
from lengthrl.registry import check_hparams
from lengthrl.rewards._checks import as_correct, as_lengths, check_group_size, groups
from lengthrl.rewards.group import grpo_lambda_selected
from lengthrl.rewards.registry import LENGTH_REWARDS, length_reward


def _prompt_ids(prompt_ids, n: int, group_size: int) -> list[str]:
    """[N] ids (one per response) or [N/G] ids (one per group) -> list of N string keys."""
    if prompt_ids is None:
        raise ConfigError("prompt_ids is required (one id per response or per group); use Sample.id")
    ids = [str(p.item() if isinstance(p, torch.Tensor) else p) for p in prompt_ids]
    if len(ids) == n // group_size and group_size > 1:
        ids = [i for i in ids for _ in range(group_size)]
    if len(ids) != n:
        raise DataError(f"prompt_ids has {len(prompt_ids)} entries; pass {n} (one per response) or {n // group_size} (one per group)")
    for k in range(0, n, group_size):
        if len(set(ids[k:k + group_size])) != 1:
            raise DataError(f"prompt_ids: group starting at response {k} mixes prompts; groups must be contiguous")
    return ids


class StatefulLengthReward:
    """Base: a registered reward plus state. Subclasses set `name` and implement `__call__`."""

    name = ""

    def __init__(self, **hparams):
        spec = LENGTH_REWARDS[self.name]
        check_hparams("length reward", self.name, hparams, spec.hparams - self.state_fed)
        self.hparams = dict(hparams)

    state_fed: frozenset[str] = frozenset()  # hyperparameters the object supplies from its state, not the config

    def state_dict(self) -> dict:
        """Plain-Python state (name, hyperparameters and the subclass's own state) for checkpoints."""
        return {"name": self.name, "hparams": dict(self.hparams), **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict()` output (hyperparameters included); a state of another reward is refused."""
        if state.get("name") != self.name:
            raise ConfigError(f"state_dict is for {state.get('name')!r}, not {self.name!r}")
        self.hparams = dict(state.get("hparams", {}))
        self._load_extra(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra(self, state: dict) -> None:
        pass


class HAPO(StatefulLengthReward):
    """HAPO (arXiv 2505.11225) with its per-prompt history h = shortest correct length seen so far.

    Each call scores the batch against the history *before* this batch (as the released code does), then
    updates h(prompt) = min(h, shortest correct length of this batch). The history only shrinks.
    """

    name = "hapo"
    state_fed = frozenset({"history"})

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.history: dict[str, int] = {}

    def __call__(self, lengths, correct, group_size: int, prompt_ids=None, update: bool = True) -> torch.Tensor:
        L = as_lengths(lengths)
        c = as_correct(correct, L.numel())
        g = check_group_size(L.numel(), group_size)
        ids = _prompt_ids(prompt_ids, L.numel(), g)
        h = torch.tensor([float(self.history.get(i, 0)) for i in ids], dtype=torch.float64)
        r = length_reward("hapo", L, c, g, history=h, **self.hparams)
        if update:
            self.update(L, c, ids)
        return r

    def update(self, L: torch.Tensor, c: torch.Tensor, ids: Sequence[str]) -> None:
        """h(prompt) <- min(h(prompt), shortest correct length); lengths of 0 are stored as 1 (h > 0)."""
        for length, ok, pid in zip(L.tolist(), c.tolist(), ids):
            if ok > 0:
                v = max(1, int(length))
                old = self.history.get(pid)
                self.history[pid] = v if old is None else min(old, v)

    def _extra_state(self) -> dict:
        return {"history": dict(self.history)}

    def _load_extra(self, state: dict) -> None:
        self.history = {str(k): int(v) for k, v in state.get("history", {}).items()}


class GRPOLambda(StatefulLengthReward):
    """GRPO-lambda (arXiv 2505.18086) as an object: the batch-level top-lambda switch, plus running counts
    of how often the length penalty was switched on (for metrics)."""

    name = "grpo_lambda"

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.steps = 0
        self.groups_seen = 0
        self.groups_penalised = 0
        self.last_selected: torch.Tensor | None = None  # [P] bool of the last call

    def __call__(self, lengths, correct, group_size: int, prompt_ids=None) -> torch.Tensor:
        r = length_reward("grpo_lambda", lengths, correct, group_size, **self.hparams)
        c = as_correct(correct, r.numel())
        lam = float(self.hparams.get("lam", LENGTH_REWARDS["grpo_lambda"].defaults["lam"]))
        sel = grpo_lambda_selected(c, group_size, lam)
        self.last_selected = sel
        self.steps += 1
        self.groups_seen += sel.numel()
        self.groups_penalised += int(sel.sum())
        return r

    def _extra_state(self) -> dict:
        return {"steps": self.steps, "groups_seen": self.groups_seen, "groups_penalised": self.groups_penalised}

    def _load_extra(self, state: dict) -> None:
        self.steps = int(state.get("steps", 0))
        self.groups_seen = int(state.get("groups_seen", 0))
        self.groups_penalised = int(state.get("groups_penalised", 0))


class DRPO(StatefulLengthReward):
    """DRPO (arXiv 2510.04474) decoupled advantage-like weights as an object; keeps the running mean weight
    of the shortest correct response over the groups with both correct and wrong responses (how strongly
    length is being preferred)."""

    name = "drpo"

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.steps = 0
        self.mixed_groups = 0
        self.sum_weight_shortest = 0.0

    def __call__(self, lengths, correct, group_size: int, prompt_ids=None) -> torch.Tensor:
        a = length_reward("drpo", lengths, correct, group_size, **self.hparams)
        L = groups(as_lengths(lengths), group_size)
        c = groups(as_correct(correct, a.numel()), group_size) > 0
        ag = groups(a.to(torch.float64), group_size)
        for p in range(L.shape[0]):
            if c[p].any() and (~c[p]).any():
                i = torch.where(c[p], L[p], torch.full_like(L[p], float("inf"))).argmin()
                self.mixed_groups += 1
                self.sum_weight_shortest += float(ag[p, i])
        self.steps += 1
        return a

    @property
    def mean_weight_shortest(self) -> float:
        """Mean DRPO weight of the shortest correct response over mixed groups."""
        return self.sum_weight_shortest / max(1, self.mixed_groups)

    def _extra_state(self) -> dict:
        return {"steps": self.steps, "mixed_groups": self.mixed_groups,
                "sum_weight_shortest": self.sum_weight_shortest}

    def _load_extra(self, state: dict) -> None:
        self.steps = int(state.get("steps", 0))
        self.mixed_groups = int(state.get("mixed_groups", 0))
        self.sum_weight_shortest = float(state.get("sum_weight_shortest", 0.0))


STATEFUL_REWARDS: dict[str, type[StatefulLengthReward]] = {c.name: c for c in (HAPO, GRPOLambda, DRPO)}
