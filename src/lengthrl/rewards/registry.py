"""The registry of length-aware rewards and the one functional entry point `length_reward`.

Every reward is a plain function `fn(lengths [N] f64, correct [N] f64, group_size, *, **hparams) -> [N]`
registered with its formula, paper and whether its value already contains the task reward c. Hyperparameters
are the function's keyword-only arguments: their names and defaults are read from the signature, so the
registry, the CLI listing, the config validation and the docs can never disagree.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lengthrl.errors import ConfigError
from lengthrl.registry import Registry, check_hparams
from lengthrl.rewards._checks import as_correct, as_lengths, check_group_size

REQUIRED = inspect.Parameter.empty


@dataclass
class LengthRewardSpec:
    """One registered length reward."""

    name: str
    fn: Callable[..., torch.Tensor]
    formula: str  # one-line formula, shown by `lengthrl rewards`
    paper: str  # "Name arXiv-id"
    includes_correctness: bool  # True: the value already contains c (do not add a separate correctness term)
    kind: str = "reward"  # "reward", or "advantage" for DRPO's advantage-like weights
    defaults: dict[str, object] = field(default_factory=dict)  # from the signature; REQUIRED marks no default

    @property
    def hparams(self) -> set[str]:
        """Names of all hyperparameters."""
        return set(self.defaults)

    @property
    def required(self) -> set[str]:
        """Names of the hyperparameters without a default."""
        return {k for k, v in self.defaults.items() if v is REQUIRED}

    def check(self, hparams: dict[str, object], where: str = "") -> None:
        """Unknown or missing hyperparameters -> ConfigError naming them and listing the valid ones."""
        check_hparams(f"{where}length reward", self.name, hparams, self.hparams)
        missing = sorted(self.required - set(hparams))
        if missing:
            raise ConfigError(
                f"{where}length reward {self.name!r} needs hyperparameter(s) {', '.join(missing)}; "
                f"valid: {', '.join(sorted(self.hparams))}"
            )


LENGTH_REWARDS: Registry[LengthRewardSpec] = Registry("length reward")


def register_length_reward(name: str, *, formula: str, paper: str, includes_correctness: bool,
                           kind: str = "reward"):
    """Decorator registering `fn` in LENGTH_REWARDS with metadata; hyperparameters = keyword-only args."""

    def deco(fn):
        sig = inspect.signature(fn)
        defaults = {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        LENGTH_REWARDS.register(name, LengthRewardSpec(name, fn, formula, paper, includes_correctness, kind, defaults))
        return fn

    return deco


def length_reward(name: str, lengths, correct, group_size: int, **hparams) -> torch.Tensor:
    """Compute the registered length reward `name` for a batch.

    lengths: [N] int response lengths in tokens; correct: [N] bool or {0,1}; groups of `group_size`
    responses to the same prompt are contiguous (N = prompts x group_size). Per-sample hyperparameters
    (e.g. `target`) may be [N] tensors. Returns a [N] float32 tensor.
    An unknown name or hyperparameter raises a ConfigError listing the valid ones.
    """
    spec = LENGTH_REWARDS[name]
    spec.check(hparams)
    L = as_lengths(lengths)  # [N]
    c = as_correct(correct, L.numel())  # [N]
    g = check_group_size(L.numel(), group_size)
    out = spec.fn(L, c, g, **hparams)  # [N] float64
    assert out.shape == L.shape, f"{name} returned shape {tuple(out.shape)}"
    return out.to(torch.float32)
