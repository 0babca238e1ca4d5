"""Evaluation records and the files that hold them.

An eval file (`eval.json` / `eval_<name>.json`, written by `lengthrl eval`) is one JSON object:
{"model": ..., "task": ..., "n_samples": ..., "metrics": {...}, "records": [record, ...]}, where a record is
{"prompt_id", "sample_idx", "length", "correct", "truncated", "response"} (plus optional "reward").
Run logs (`metrics.jsonl`, `samples.jsonl`) are JSON lines. Every reader here names the file, line and field
of a malformed entry instead of failing deep inside an analysis.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lengthrl.errors import DataError


@dataclass
class EvalRecord:
    """One sampled response to one prompt, as scored by the task's verifier."""

    prompt_id: str  # stable id of the prompt
    sample_idx: int  # 0..n_samples-1 within the prompt
    length: int  # response length in tokens, as the generator counts it
    correct: bool  # verifier verdict
    truncated: bool = False  # hit the generation cap before EOS
    response: str = ""  # decoded response text
    reward: float | None = None  # task reward, when the verifier gives one
    level: int | None = None  # the prompt's difficulty level, for tasks that have one (Sample.meta["level"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the eval file's record format)."""
        return asdict(self)


_REQUIRED = ("prompt_id", "length", "correct")


def record_from_dict(row: Any, where: str) -> EvalRecord:
    """Validate one record dict. `where` names its place ("eval.json record 3") in error messages."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in _REQUIRED if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}; each record needs {', '.join(_REQUIRED)}")
    length = row["length"]
    if isinstance(length, bool) or not isinstance(length, (int, float)) or not math.isfinite(length) or length < 0:
        raise DataError(f"{where}: field 'length' must be a non-negative number of tokens, got {length!r}")
    if not isinstance(row["correct"], (bool, int)) or row["correct"] not in (0, 1, True, False):
        raise DataError(f"{where}: field 'correct' must be true/false, got {row['correct']!r}")
    return EvalRecord(
        prompt_id=str(row["prompt_id"]),
        sample_idx=int(row.get("sample_idx", 0)),
        length=int(length),
        correct=bool(row["correct"]),
        truncated=bool(row.get("truncated", False)),
        response=str(row.get("response", "")),
        reward=None if row.get("reward") is None else float(row["reward"]),
        level=_level(row.get("level"), where),
    )


def _level(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise DataError(f"{where}: field 'level' must be an integer difficulty level or null, got {v!r}")
    return v


def records_from_dicts(rows: list[Any], source: str = "records") -> list[EvalRecord]:
    """Validate a list of record dicts (already-built `EvalRecord`s pass through)."""
    return [r if isinstance(r, EvalRecord) else record_from_dict(r, f"{source} record {i}") for i, r in enumerate(rows)]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; blank lines are skipped. A bad line raises DataError naming file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    rows = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
            rows.append(obj)
    return rows


@dataclass
class EvalResult:
    """The content of one eval file."""

    model: str
    task: str
    n_samples: int
    metrics: dict[str, Any]
    records: list[EvalRecord]
    extra: dict[str, Any] | None = None  # other top-level keys (sampling params, ks, ...)

    def to_dict(self) -> dict[str, Any]:
        """The eval-file JSON object."""
        out = {"model": self.model, "task": self.task, "n_samples": self.n_samples, "metrics": self.metrics}
        out.update(self.extra or {})
        out["records"] = [r.to_dict() for r in self.records]
        return out


def load_eval(path: str | Path) -> EvalResult:
    """Read and validate an eval file written by `lengthrl eval`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: eval file not found; write one with `lengthrl eval ... --out {path}`")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("records"), list):
        raise DataError(f"{path}: expected a JSON object with a 'records' list")
    records = records_from_dicts(obj["records"], str(path))
    known = {"model", "task", "n_samples", "metrics", "records"}
    return EvalResult(
        model=str(obj.get("model", "")),
        task=str(obj.get("task", "")),
        n_samples=int(obj.get("n_samples", 0) or 0),
        metrics=dict(obj.get("metrics") or {}),
        records=records,
        extra={k: v for k, v in obj.items() if k not in known},
    )


def save_eval(result: EvalResult, path: str | Path) -> Path:
    """Write `result` as an eval file (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1))
    return path
