"""A small named registry: every pluggable piece of lengthrl (losses, advantage estimators, length rewards,
tasks) is registered under a name. The registries drive the CLI and the docs, so a new item registered here shows up in
`lengthrl --help`, in the docs and in the tests without an if/elif chain to extend. (CompositeReward still
dispatches its three built-in base terms, correct / format / constant, by name: they are not registry items.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from lengthrl.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """name -> item. `kind` is used in error messages ("loss", "advantage estimator", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None):
        """Register `item` under `name`, or use as a decorator: `@REG.register("grpo")`."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add(item) if item is not None else add

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self._items)}"
            ) from None

    get_item = __getitem__

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"


def check_hparams(kind: str, name: str, given: Mapping[str, object], allowed: Callable[[], set[str]] | set[str]):
    """Raise a ConfigError naming unknown hyperparameters and listing the valid ones."""
    valid = allowed() if callable(allowed) else allowed
    bad = sorted(set(given) - set(valid))
    if bad:
        raise ConfigError(
            f"{kind} {name!r} got unknown hyperparameter(s) {', '.join(bad)}; "
            f"valid: {', '.join(sorted(valid)) or '(none)'}"
        )
