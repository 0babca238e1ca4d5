"""`lengthrl tasks`: list the tasks, prompt templates and answer rules; preview a task's samples; check a
data file against a field mapping before training on it."""

from __future__ import annotations

import json

from lengthrl.commands import command
from lengthrl.errors import ConfigError


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else "-"


def parse_task_args(items: list[str] | None, flag: str = "--arg") -> dict:
    """`key=value` strings -> task kwargs; values are read as JSON when they parse (`3`, `[512, 1024]`, `true`),
    else kept as text. A malformed item raises a ConfigError naming `flag`."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects key=value, got {item!r}; write KEY=VALUE, e.g. {flag} digits=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@command(
    "tasks",
    "list tasks, prompt templates and answer rules; preview a task or check a data file",
    examples=[
        "lengthrl tasks",
        "lengthrl tasks --show reasoning_gym:leg_counting --n 2",
        "lengthrl tasks --show data:gsm8k.jsonl --arg prompt_field=question --arg answer_rule=hash",
        "lengthrl tasks --show data:math.parquet --arg prompt_field=problem --arg answer_field=solution "
        "--arg answer_rule=boxed --arg template=l1 --arg 'budgets=[512,1024]'",
    ],
)
def run_tasks(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from lengthrl.tasks import TASKS, TEMPLATES, get_task
    from lengthrl.verifiers import EXTRACTORS

    console = Console()
    if args.show:
        task = get_task(args.show, **parse_task_args(args.arg))
        for split in ("train", "test"):
            samples = task.samples(split, n=args.n, seed=args.seed)
            console.print(f"[bold]{args.show}[/bold] {split}: showing {len(samples)}")
            for s in samples:
                console.print({"id": s.id, "prompt": s.prompt, "answer": s.answer, "target_len": s.target_len})
        return 0
    table = Table(title="tasks (lengthrl.tasks.TASKS)")
    table.add_column("name")
    table.add_column("argument after ':'")
    table.add_column("description")
    for name, factory in TASKS.items():
        table.add_row(name, getattr(factory, "name_arg", None) or "-", _first_line(factory))
    console.print(table)
    table = Table(title="prompt templates (lengthrl.tasks.TEMPLATES)")
    for col in ("name", "budget", "source / use"):
        table.add_column(col)
    for name, tpl in TEMPLATES.items():
        table.add_row(name, "yes" if tpl.needs_budget else "-", tpl.doc)
    console.print(table)
    table = Table(title="answer rules (lengthrl.verifiers.EXTRACTORS)")
    table.add_column("name")
    table.add_column("reads")
    for name, fn in EXTRACTORS.items():
        table.add_row(name, _first_line(fn))
    console.print(table)
    return 0


@run_tasks.args
def _(p):
    p.add_argument("--show", default=None, metavar="TASK", help="preview samples of TASK (e.g. data:file.jsonl)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="task keyword argument (repeatable); values parse as JSON when they can")
    p.add_argument("--n", type=int, default=3, help="samples per split to show (default 3)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
