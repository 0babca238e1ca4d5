"""The task registry: name -> factory(**kwargs) -> Task.

`get_task("reasoning_gym:leg_counting", size=100)` splits the name at the first ':'; the part after it fills
the factory's `name_arg` (the dataset name for reasoning_gym, the file path for data). Modules that define
tasks register them on import: `@TASKS.register("name")` on a class or function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lengthrl.errors import ConfigError
from lengthrl.registry import Registry
from lengthrl.tasks.base import Task

TASKS: Registry[Callable[..., Task]] = Registry("task")


def get_task(name: str, **kwargs: Any) -> Task:
    """Build the task `name` (optionally `base:argument`) with `kwargs`."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"task name must be a non-empty string, got {name!r}")
    base, sep, arg = name.partition(":")
    factory = TASKS[base]
    if sep:
        name_arg = getattr(factory, "name_arg", None)
        if name_arg is None:
            raise ConfigError(f"task {base!r} takes no ':argument' (got {name!r}); use plain {base!r}")
        if not arg:
            raise ConfigError(f"task {name!r}: empty {name_arg} after ':'")
        if name_arg in kwargs:
            raise ConfigError(f"task {name!r}: {name_arg} given twice (in the name and as a keyword)")
        kwargs[name_arg] = arg
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"task {base!r}: bad arguments ({e})") from None
