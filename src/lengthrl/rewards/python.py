"""The user's own Python reward functions in lengthrl's trainer, with TRL's signature.

Config key `reward_funcs`: a list of "package.module:function" strings (weight 1) or tables
`{func = "package.module:function", weight = 0.5}`. Each function is imported before step 1 (from the Python path
or the current directory) and called once per step on this process's responses as

    f(prompts=[n], completions=[n], completion_ids=[n], **columns) -> [n] numbers (or None)

as TRL's GRPOTrainer calls reward functions: `prompts` the task's prompt texts (one per response, the task's
template applied, before any chat template), `completions` the response texts, `completion_ids` their token ids
(EOS included, as lengthrl counts lengths), and `columns` one list [n] per column of the data file other than
the prompt column (`answer` = the reference answer for the built-in tasks). None counts as 0, as TRL's nansum
does. The value goes into the total reward times its weight and is logged as `reward/<function name>`.
A bad import path or a wrong return is a ConfigError (one line naming the function and the fix).
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lengthrl.errors import ConfigError


@dataclass(frozen=True)
class PythonReward:
    """One user reward function: its import path, the loaded callable, its weight and its metric key."""

    path: str
    fn: Callable[..., Any]
    weight: float
    key: str


def load_function(path: str) -> Callable[..., Any]:
    """'package.module:function' -> the callable (the current directory is searched too)."""
    module, sep, name = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not sep or not module or not name:
        raise ConfigError(f"reward_funcs: {path!r} is not 'package.module:function'; write e.g. "
                          "reward_funcs = [\"myrewards:brevity\"]")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a module next to the config, as `python -m` would find it
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"reward_funcs: cannot import module {module!r} of {path!r} ({e}); put it on the "
                          "Python path (PYTHONPATH) or in the current directory") from None
    fn = mod
    for part in name.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ConfigError(f"reward_funcs: module {module!r} has no {name!r} (from {path!r}); check the name "
                              "after ':'")
    if not callable(fn):
        raise ConfigError(f"reward_funcs: {path!r} is a {type(fn).__name__}, not a function")
    return fn


def load_rewards(entries: Sequence[Any], reserved: Sequence[str] = ()) -> list[PythonReward]:
    """The config's `reward_funcs` entries, imported; keys are the function names (suffixed _2, _3... when
    repeated or clashing with a `reserved` term key)."""
    out, taken = [], set(reserved)
    for i, e in enumerate(entries):
        if isinstance(e, str):
            path, weight = e, 1.0
        elif isinstance(e, dict) and set(e) <= {"func", "weight"} and "func" in e:
            path, weight = e["func"], e.get("weight", 1.0)
        else:
            raise ConfigError(f"reward_funcs[{i}]: expected 'package.module:function' or {{func = \"...\", "
                              f"weight = 1.0}}, got {e!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"reward_funcs[{i}] ({path}): weight {weight!r} must be a finite number")
        fn = load_function(path)
        base = path.rpartition(":")[2].rpartition(".")[2]
        key, k = base, 1
        while key in taken:
            k += 1
            key = f"{base}_{k}"
        taken.add(key)
        out.append(PythonReward(path, fn, float(weight), key))
    return out


def columns_of(samples: Sequence[Any], group_size: int) -> dict[str, list]:
    """{column: [n] values} of the responses' prompts (each prompt's value repeated group_size times): the data
    file's columns other than the prompt column (`Sample.meta["columns"]`), else {"answer": reference}."""
    rows = [s.meta.get("columns") or {"answer": s.answer} for s in samples]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows for _ in range(group_size)] for k in keys}


def call_rewards(funcs: Sequence[PythonReward], samples: Sequence[Any], texts: list[str],
                 completion_ids: list[list[int]], group_size: int) -> dict[str, list[float]]:
    """{key: [n] values} of every function on these responses (n = len(samples) · group_size, groups
    contiguous); a wrong return raises a ConfigError naming the function."""
    n = len(texts)
    prompts = [s.prompt for s in samples for _ in range(group_size)]
    cols = columns_of(samples, group_size)
    for clash in ("prompts", "completions", "completion_ids"):
        cols.pop(clash, None)
    out = {}
    for r in funcs:
        got = r.fn(prompts=prompts, completions=texts, completion_ids=completion_ids, **cols)
        if hasattr(got, "tolist"):  # numpy array or torch tensor
            got = got.tolist()
        if not isinstance(got, (list, tuple)) or len(got) != n:
            what = f"{len(got)} values" if isinstance(got, (list, tuple)) else f"a {type(got).__name__}"
            raise ConfigError(f"reward function {r.path} returned {what} for {n} completions; it must return a "
                              "list with one number (or None) per completion")
        vals = []
        for j, v in enumerate(got):
            if v is None:
                v = 0.0
            if not isinstance(v, (int, float)):  # bools count as 1 / 0
                raise ConfigError(f"reward function {r.path} returned {v!r} for completion {j}; each value must be "
                                  "a number or None")
            vals.append(float(v))
        out[r.key] = vals
    return out
