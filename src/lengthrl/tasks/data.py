"""The user's data: local JSONL, JSON, CSV or parquet files, loaded through the `datasets` library with a
field mapping, validated row by row with errors that name the file, the line (or row) and the field.

JSONL files are first read line by line here, so a malformed line is reported with its true line number
before `datasets` sees the file. CSV rows are reported as `row N (line N+1)` (the header is line 1; a
quoted field spanning several lines shifts the line number), parquet and JSON-array rows as `row N`,
counting from 1.

Examples of mappings (`FieldMap`):
- GSM8K export: prompt_field="question", answer_field="answer", answer_rule="hash" ("... #### 72")
- MATH export: prompt_field="problem", answer_field="solution", answer_rule="boxed"
- DAPO-Math-17K export (flattened): prompt_field="prompt", answer_field="solution" (already the answer)
- conversational data (TRL's format): a prompt column of [{"role", "content"}, ...] messages, e.g.
  prompt_field="messages"; the last user turn is the prompt (templates apply to it), earlier turns are kept for
  the chat template (`lengthrl.tasks.chat`), a final assistant turn is the worked solution
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lengthrl.errors import ConfigError, DataError
from lengthrl.registry import Registry
from lengthrl.tasks.base import Sample
from lengthrl.tasks.chat import split_conversation
from lengthrl.verifiers.extract import EXTRACTORS


@dataclass(frozen=True)
class FieldMap:
    """Which column holds what. `answer_rule` extracts the reference answer from the answer column
    (`raw`: the column is the answer; `hash`: GSM8K '#### n'; `boxed`: MATH \\boxed{}; `auto`, ...)."""

    prompt_field: str = "prompt"
    answer_field: str = "answer"
    id_field: str | None = None
    target_len_field: str | None = None  # per-row length target / budget in tokens
    solution_field: str | None = None  # a worked solution for supervised warm-up
    tests_field: str | None = None  # code tasks: assert snippets or {"input", "output"} cases (or JSON text)
    answer_rule: str = "raw"

    def __post_init__(self):
        EXTRACTORS[self.answer_rule]  # unknown rule -> UnknownNameError listing the valid ones
        for name in ("prompt_field", "answer_field"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"FieldMap.{name} must be a non-empty column name")


# --------------------------------------------------------------------------- file formats

FILE_FORMATS: Registry[str] = Registry("data file format")  # suffix -> `datasets` builder name
FILE_FORMATS.register(".jsonl", "json")
FILE_FORMATS.register(".json", "json")
FILE_FORMATS.register(".csv", "csv")
FILE_FORMATS.register(".parquet", "parquet")


def _where(path: Path, i: int, fmt: str) -> str:
    """How row i (0-based, in file order) is named in messages."""
    if fmt == ".jsonl":
        return f"{path}: line {i + 1}"
    if fmt == ".csv":
        return f"{path}: row {i + 1} (line {i + 2})"
    return f"{path}: row {i + 1}"


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _parse_json(text: str, where: str) -> Any:
    """One JSON document; DataError naming `where` for malformed JSON, a duplicate key (which value counts is
    not defined) or nesting too deep for the parser."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise DataError(f"{where}: duplicate key {e.args[0]!r} in one object; keep one of them") from None
    except json.JSONDecodeError as e:
        raise DataError(
            f"{where}: malformed JSON ({e.msg} at column {e.colno}); each line must be one JSON object"
        ) from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read; a row must be a flat JSON object") from None


def _check_jsonl_lines(path: Path, fields: FieldMap) -> list[int]:
    """Validate a JSONL file line by line: one JSON object per non-blank line, with every mapped field.
    Returns the line number of each record, so later messages can name the right line; raises DataError
    on the first bad line."""
    lines = []
    required = [f for f in (fields.prompt_field, fields.answer_field, fields.id_field, fields.target_len_field,
                            fields.solution_field, fields.tests_field) if f]
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                obj = _parse_json(line, f"{path}: line {n}")
                if not isinstance(obj, dict):
                    raise DataError(f"{path}: line {n}: expected a JSON object, got {type(obj).__name__}")
                for field in required:
                    if field not in obj:
                        have = ", ".join(map(str, obj)) or "(none)"
                        raise DataError(
                            f"{path}: line {n}: missing field {field!r} (fields present: {have}); map the right column"
                        )
                lines.append(n)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    return lines


def _check_parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path).schema_arrow
    except Exception as e:  # pyarrow's errors for a truncated or corrupt file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable Parquet file ({msg[:200]}); re-export it") from None


def _load_rows(path: Path, fmt: str) -> list[dict[str, Any]]:
    """All rows of the file as dicts, through `datasets` (its pyarrow errors become DataErrors)."""
    import datasets

    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="lengthrl-data-") as cache:  # no cache left behind
            ds = datasets.load_dataset(
                FILE_FORMATS[fmt], data_files=str(path), split="train", keep_in_memory=True, cache_dir=cache
            )
            return ds.to_list()
    except Exception as e:  # pyarrow / datasets parse errors: report them against the file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "corresponds to no data" in msg:
            raise DataError(f"{path}: no rows (the file has no data rows)") from None
        raise DataError(
            f"{path}: could not be read as {fmt[1:]} ({type(e).__name__}: {msg[:300]}); check that every row has "
            "the same columns with consistent types"
        ) from None


def _text(value: Any) -> str | None:
    """A cell as text: strings as they are, numbers formatted, everything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return None if value != value else (str(int(value)) if value.is_integer() else repr(value))
    return None


def _tests(value: Any, where: str, field: str) -> tuple[str, list]:
    """('tests', [assert snippets]) or ('io_tests', [(stdin, stdout)]) from a cell (a list or its JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: field {field!r} must be a list of test snippets or its JSON text") from None
    if isinstance(value, list) and value and all(isinstance(t, str) and t.strip() for t in value):
        return "tests", value
    if isinstance(value, list) and value and all(
        isinstance(t, dict) and isinstance(t.get("input"), str) and isinstance(t.get("output"), str) for t in value
    ):
        return "io_tests", [(t["input"], t["output"]) for t in value]
    raise DataError(
        f"{where}: field {field!r} must be a non-empty list of test snippets (strings) or of "
        '{"input": ..., "output": ...} cases'
    )


def row_to_sample(row: dict[str, Any], fields: FieldMap, where: str, default_id: str) -> Sample:
    """One validated row as a Sample; DataError naming `where` and the field otherwise."""

    def get(field: str) -> Any:
        if field not in row:
            have = ", ".join(map(str, row)) or "(none)"
            raise DataError(f"{where}: missing field {field!r} (fields present: {have}); map the right column")
        return row[field]

    prompt = get(fields.prompt_field)
    chat, chat_answer = None, None
    if isinstance(prompt, list):  # conversational: [{"role", "content"}, ...] (lengthrl.tasks.chat)
        chat, prompt, chat_answer = split_conversation(prompt, where, fields.prompt_field)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: field {fields.prompt_field!r}: empty or non-text prompt ({prompt!r:.40})")
    raw_answer = _text(get(fields.answer_field))
    if raw_answer is None or not raw_answer.strip():
        raise DataError(f"{where}: field {fields.answer_field!r}: empty or non-text answer")
    answer = EXTRACTORS[fields.answer_rule](raw_answer)
    if answer is None:
        raise DataError(
            f"{where}: field {fields.answer_field!r}: no answer found with answer rule {fields.answer_rule!r} "
            f"in {raw_answer[-80:]!r}; choose another --answer-rule"
        )
    sid = default_id
    if fields.id_field:
        sid = _text(get(fields.id_field))
        if sid is None or not sid.strip():
            raise DataError(f"{where}: field {fields.id_field!r}: empty id")
    target = None
    if fields.target_len_field:
        t = get(fields.target_len_field)
        ok = isinstance(t, int) and not isinstance(t, bool) or isinstance(t, float) and t.is_integer()
        if not ok or int(t) <= 0:
            raise DataError(f"{where}: field {fields.target_len_field!r}: target length must be a positive integer, got {t!r}")
        target = int(t)
    solution = None
    if fields.solution_field:
        solution = _text(get(fields.solution_field))
    if solution is None and chat_answer is not None:
        solution = chat_answer  # a conversation's final assistant turn is its worked solution
    # the row's other columns, for reward functions with TRL's signature (lengthrl.rewards.python)
    meta: dict[str, Any] = {"question": prompt, "columns": {k: v for k, v in row.items() if k != fields.prompt_field}}
    if chat:
        meta["chat"] = chat
    if fields.tests_field:
        key, tests = _tests(get(fields.tests_field), where, fields.tests_field)
        meta[key] = tests
    if fields.answer_rule != "raw" and solution is None:
        solution = raw_answer  # GSM8K / MATH: the answer column is a worked solution
    return Sample(id=sid, prompt=prompt, answer=answer, solution=solution, target_len=target, meta=meta)


def load_samples(path: str | Path, fields: FieldMap | None = None) -> list[Sample]:
    """Read a JSONL / JSON / CSV / parquet file into Samples (prompts not yet templated).

    Raises DataError naming the file, line or row and field for: a missing file, an unknown suffix,
    malformed JSON lines, missing fields, empty prompts or answers, answers the rule cannot read,
    non-positive target lengths, duplicate ids, or an empty file.
    """
    fields = fields or FieldMap()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} not found (or not a file)")
    fmt = p.suffix.lower()
    if fmt not in FILE_FORMATS:
        raise DataError(f"{p}: unsupported file type {fmt or '(none)'!r}; use one of {', '.join(FILE_FORMATS)}")
    line_numbers = _check_jsonl_lines(p, fields) if fmt == ".jsonl" else None
    if fmt == ".json":  # duplicate keys and deep nesting; other parse errors are reported by the reader below
        try:
            _parse_json(p.read_bytes().decode("utf-8"), str(p))
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: not valid UTF-8 text (byte {e.start}); save the file as UTF-8") from None
        except DataError as e:
            if "malformed JSON" not in str(e):
                raise
    if fmt == ".parquet":
        _check_parquet(p)
    if line_numbers is not None and not line_numbers:
        raise DataError(f"{p}: no rows (the file is empty)")
    rows = _load_rows(p, fmt)
    if not rows:
        raise DataError(f"{p}: no rows (the file is empty)")
    samples, seen = [], {}
    for i, row in enumerate(rows):
        where = f"{p}: line {line_numbers[i]}" if line_numbers else _where(p, i, fmt)
        s = row_to_sample(row, fields, where, default_id=f"{p.stem}:{i}")
        if s.id in seen:
            raise DataError(f"{where}: field {fields.id_field!r}: duplicate id {s.id!r} (first at {seen[s.id]})")
        seen[s.id] = where
        samples.append(s)
    return samples
