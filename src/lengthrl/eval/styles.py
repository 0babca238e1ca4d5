"""Solution styles of procedural-task responses: which of the three trace shapes a response follows, and
accuracy, mean length and share per style over an eval file (`lengthrl styles`).

The procedural tasks (`lengthrl.tasks.procedural`) write worked solutions in three styles: ``concise`` (only
``<answer>N</answer>``), ``steps`` (one line of running work, then the answer) and ``verbose`` (every step with
a self-check, a closing line, then the answer). A response is classified by its shape alone, whatever its
numbers: a ``steps`` response with a wrong running count is still ``steps``. Anything else (no final answer
tag, a truncated or garbled trace, a mix of shapes) is ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lengthrl.commands import command
from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.records import EvalRecord, load_eval, records_from_dicts

STYLE_NAMES: tuple[str, ...] = ("concise", "steps", "verbose", "other")
_ANSWER_LINE = re.compile(r"<answer>[^<\n]*</answer>")


@dataclass(frozen=True)
class TraceShape:
    """Line patterns of one task's traces: a ``steps`` body line, a ``verbose`` body line, the verbose closer;
    `min_verbose_lines`: the fewest body lines a verbose trace of the task has (its closer included)."""

    step: re.Pattern
    verbose: re.Pattern
    close: re.Pattern
    min_verbose_lines: int = 2


SHAPES: dict[str, TraceShape] = {
    "count_letters": TraceShape(
        step=re.compile(r"[a-z]\d+( [a-z]\d+)*"),
        verbose=re.compile(r"[a-z] (is|not) [a-z], \d+"),
        close=re.compile(r"check: [a-z] at (\d+(,\d+)*|none), total \d+ ok"),
    ),
    "arith_chain": TraceShape(
        step=re.compile(r"\d+[-+*]\d+=\d+"),
        verbose=re.compile(r"\d+[-+*]\d+=\d+, check \d+[-+/]\d+=\d+ ok"),
        close=re.compile(r"so the result is \d+"),
    ),
    "sort_digits": TraceShape(
        step=re.compile(r"min \d, left (\d+|none)"),
        verbose=re.compile(r"min \d, left (\d+|none), ok"),
        close=re.compile(r"check: \d(<=\d)* ok, \d+ digits ok"),
    ),
    "long_add": TraceShape(
        step=re.compile(r"\d+: (\d\+\d\+\d=\d+ w\d c\d|carry \d w\d)"),
        verbose=re.compile(r"\d+: (\d\+\d\+\d=\d+ w\d c\d, check \d+-\d-\d=\d ok|carry \d w\d, ok)"),
        close=re.compile(r"read back: \d+"),
    ),
    "add_chain": TraceShape(  # plain lines, or lines that start with the term's label (labelled = true)
        step=re.compile(r"\d+\+\d=\d+|[a-z] (\d+\+\d=\d+|\d)"),
        verbose=re.compile(r"\d+\+\d=\d+, left \d(\+\d)*|[a-z] (\d+\+\d=\d+|\d), left [a-z]\d( [a-z]\d)*"),
        close=re.compile(r"([a-z] )?\d+\+\d=\d+, done"),
        min_verbose_lines=1,  # two plain terms: the closing line alone
    ),
}


def _shape_style(body: list[str], shape: TraceShape) -> str:
    """The style of the reasoning lines `body` (the answer line removed) under one task's shape."""
    if not body:
        return "concise"
    if all(shape.step.fullmatch(line) for line in body):
        return "steps"
    if (len(body) >= shape.min_verbose_lines and shape.close.fullmatch(body[-1])
            and all(shape.verbose.fullmatch(x) for x in body[:-1])):
        return "verbose"
    return "other"


def classify_style(response: str, task: str | None = None) -> str:
    """``concise``, ``steps``, ``verbose`` or ``other``: the trace shape of a procedural-task response.

    `task` is a procedural task name (see `SHAPES`); None tries every task's shapes and takes the first that
    fits. The response must end with one ``<answer>...</answer>`` line (trailing whitespace ignored).
    """
    if task is not None and task not in SHAPES:
        raise ConfigError(f"styles: no trace shapes for task {task!r}; valid: {', '.join(SHAPES)}")
    lines = response.strip().split("\n")
    if not _ANSWER_LINE.fullmatch(lines[-1].strip()):
        return "other"
    body = [line.strip() for line in lines[:-1]]
    for name in [task] if task is not None else list(SHAPES):
        style = _shape_style(body, SHAPES[name])
        if style != "other":
            return style
    return "other"


def style_summary(records: Sequence[EvalRecord | dict], task: str | None = None) -> dict[str, dict[str, Any]]:
    """Per style (and ``all``): ``n``, ``share`` of the records, ``acc`` with its binomial standard error
    ``acc_se``, and mean ``len`` (the last three None when the style has no records)."""
    recs = records_from_dicts(list(records))
    if not recs:
        raise DataError("styles: no records to summarise")
    groups: dict[str, list[EvalRecord]] = {s: [] for s in STYLE_NAMES}
    for r in recs:
        groups[classify_style(r.response, task)].append(r)
    groups["all"] = recs
    out = {}
    for style, rs in groups.items():
        n = len(rs)
        acc = sum(r.correct for r in rs) / n if n else None
        out[style] = {
            "n": n,
            "share": n / len(recs),
            "acc": acc,
            "acc_se": None if acc is None else (acc * (1 - acc) / n) ** 0.5,
            "len": sum(r.length for r in rs) / n if n else None,
        }
    return out


def style_summary_by_level(records: Sequence[EvalRecord | dict], task: str | None = None) -> dict[str, dict]:
    """`style_summary` of the records of each difficulty level (keys ``"level N"``, ascending) and of all of
    them (``"all levels"``). Every record needs a level (records of tasks without levels have none)."""
    recs = records_from_dicts(list(records))
    missing = sum(r.level is None for r in recs)
    if missing:
        raise DataError(f"styles --by-level: {missing} of {len(recs)} records have no 'level'; only tasks with "
                        "difficulty levels (add_chain, long_add) record one, and eval files written before levels "
                        "were recorded have none: re-run the evaluation")
    out = {f"level {lv}": style_summary([r for r in recs if r.level == lv], task)
           for lv in sorted({r.level for r in recs})}
    out["all levels"] = style_summary(recs, task)
    return out


def eval_file_styles(paths: str | Path | Sequence[str | Path], task: str | None = None,
                     by_level: bool = False) -> dict[str, dict[str, Any]]:
    """`style_summary` of one eval file, or of several pooled (e.g. the seeds of one recipe); the task defaults
    to the files' own when it has trace shapes. `by_level`: `style_summary_by_level` instead."""
    results = [load_eval(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if task is None and results[0].task in SHAPES:
        task = results[0].task
    records = [r for res in results for r in res.records]
    return style_summary_by_level(records, task) if by_level else style_summary(records, task)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


@command("styles", examples=["lengthrl styles runs/luspo/eval.json",
                   "lengthrl styles runs/gspo/eval.json runs/luspo/eval.json --task count_letters --json",
                   "lengthrl styles runs/gspo/eval.json runs/gspo-seed1/eval.json --pool"])
def run(args) -> int:
    """Print one table per eval file (or JSON with --json)."""
    import json  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    if args.pool:
        results = {" + ".join(args.files): eval_file_styles(args.files, args.task, args.by_level)}
    else:
        results = {str(p): eval_file_styles(p, args.task, args.by_level) for p in args.files}
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    console = Console()
    if args.by_level:  # one table per level, titled "<file>, level N"
        results = {f"{path}, {lv}": summary for path, levels in results.items() for lv, summary in levels.items()}
    for path, summary in results.items():
        table = Table(title=f"solution styles of {path}")
        for col in ("style", "n", "share", "acc", "acc s.e.", "mean len"):
            table.add_column(col, justify="right")
        for style, s in summary.items():
            table.add_row(style, str(s["n"]), f"{s['share']:.3f}", _fmt(s["acc"], ".3f"), _fmt(s["acc_se"], ".3f"),
                          _fmt(s["len"], ".1f"))
        console.print(table)
    return 0


@run.args
def _args(p) -> None:
    p.add_argument("files", nargs="+", help="eval files (a run's eval.json, or written by `lengthrl eval --out`)")
    p.add_argument("--task", default=None, help=f"trace shapes of this task ({', '.join(SHAPES)}); default: the "
                   "eval file's task, else every task's")
    p.add_argument("--pool", action="store_true", help="one summary over the records of all the files (seeds)")
    p.add_argument("--json", action="store_true", help="print the summaries as JSON")
    p.add_argument("--by-level", action="store_true", help="one summary per difficulty level (tasks with levels: "
                   "add_chain, long_add)")
