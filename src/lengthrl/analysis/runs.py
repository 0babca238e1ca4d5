"""Reading a run directory written by the trainer and `lengthrl eval`.

RUN/config.json, RUN/metrics.jsonl (one row per step), RUN/samples.jsonl (sampled responses with length,
correctness, reward, advantage), RUN/eval.json and RUN/eval_<name>.json (eval files), and optionally
RUN/audit.json / RUN/audit.png (the length-bias audit). Every part but the directory itself may be missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.records import EvalResult, load_eval, read_jsonl


@dataclass
class Run:
    """The logs of one run (or a bare eval file, then only `evals` is filled)."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows, in step order
    samples: list[dict[str, Any]] = field(default_factory=list)  # samples.jsonl rows
    evals: dict[str, EvalResult] = field(default_factory=dict)  # "eval" or <name> -> eval file
    audit: Any = None  # audit.json content
    audit_png: Path | None = None

    def main_eval(self, name: str | None = None) -> EvalResult | None:
        """The eval named `name`, else "eval", else the first one (None when the run has none)."""
        if name is not None:
            if name not in self.evals:
                raise ConfigError(f"run {self.name}: no eval named {name!r}; have {', '.join(self.evals) or 'none'} "
                                  f"(files eval.json / eval_<name>.json)")
            return self.evals[name]
        return self.evals.get("eval") or next(iter(self.evals.values()), None)

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of metric `key` over the steps that log it as a number."""
        xs, ys = [], []
        for i, row in enumerate(self.metrics):
            v = row.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                xs.append(float(row.get("step", i)))
                ys.append(float(v))
        return xs, ys


def load_run(path: str | Path) -> Run:
    """Load a run directory, or a single eval JSON file as a run with one eval."""
    path = Path(path)
    if path.is_file():
        return Run(path=path, name=path.stem, evals={"eval": load_eval(path)})
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory (give a directory written by `lengthrl train`)")
    config: dict[str, Any] = {}
    if (path / "config.json").exists():
        try:
            config = json.loads((path / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path / 'config.json'}: not valid JSON ({e.msg} at line {e.lineno})") from None
    metrics = read_jsonl(path / "metrics.jsonl") if (path / "metrics.jsonl").exists() else []
    metrics.sort(key=lambda r: r.get("step", 0) if isinstance(r.get("step", 0), (int, float)) else 0)
    samples = read_jsonl(path / "samples.jsonl") if (path / "samples.jsonl").exists() else []
    evals = {}
    for f in sorted(path.glob("eval*.json")):
        key = "eval" if f.stem == "eval" else f.stem.removeprefix("eval_")
        evals[key] = load_eval(f)
    audit = None
    if (path / "audit.json").exists():
        try:
            audit = json.loads((path / "audit.json").read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path / 'audit.json'}: not valid JSON ({e.msg} at line {e.lineno})") from None
    name = str(config.get("name") or path.name)
    return Run(path=path, name=name, config=config, metrics=metrics, samples=samples, evals=evals, audit=audit,
               audit_png=path / "audit.png" if (path / "audit.png").exists() else None)


def unique_names(runs: list[Run]) -> list[str]:
    """Run names made unique by suffixing #2, #3 ... to repeats."""
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
        out.append(r.name if seen[r.name] == 1 else f"{r.name}#{seen[r.name]}")
    return out
