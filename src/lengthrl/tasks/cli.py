"""`lengthrl tasks`: list the tasks, prompt templates and answer rules; preview a task's samples; check a
data file against a field mapping before training on it."""

from __future__ import annotations

from lengthrl.commands import command
from lengthrl.parsing import parse_items


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else "-"


def parse_task_args(items: list[str] | None, flag: str = "--arg") -> dict:
    """`key=value` strings -> task kwargs, read by the same parser as `--set` (`lengthrl.parsing`): TOML, then
    JSON (`3`, `[512, 1024]`, `true`, `{"format_template": "hash"}`), else text."""
    return parse_items(items, flag)


@command(
    "tasks",
    examples=[
        "lengthrl tasks",
        "lengthrl tasks --show reasoning_gym:leg_counting --n 2",
        "lengthrl tasks --show data:gsm8k.jsonl --arg prompt_field=question --arg answer_rule=hash",
        "lengthrl tasks --show data:gsm8k.jsonl --arg prompt_field=question --arg answer_rule=hash "
        "--arg template=gsm8k --model /path/to/instruct-model --system-prompt 'Be brief.' --n 1",
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
        tok = fmt = None
        if args.model:  # the prompt as that model is given it (its chat template, --system-prompt)
            from lengthrl.models.loading import load_tokenizer
            from lengthrl.tasks.chat import prompt_format

            tok = load_tokenizer(args.model)
            fmt = prompt_format(tok, args.chat_template, args.system_prompt, key="--chat-template")
        for split in ("train", "test"):
            samples = task.samples(split, n=args.n, seed=args.seed)
            console.print(f"[bold]{args.show}[/bold] {split}: showing {len(samples)}")
            if split == "test" and not samples:
                src = getattr(task, "test_source", None)
                console.print(f"  no test split{f' ({src} selected no rows)' if src else ''}: hold out rows with "
                              "--arg test_fraction=0.1 or give --arg test_path=test.jsonl (training then needs "
                              "task_args.test_fraction / task_args.test_path, or eval_prompts=0)")
            for s in samples:
                console.print({"id": s.id, "prompt": s.prompt, "answer": s.answer, "target_len": s.target_len})
                if fmt is not None:
                    ids = fmt.encode(tok, s)
                    console.print(f"[bold]as {args.model} is prompted[/bold] ({len(ids)} tokens):")
                    console.print(fmt.text(tok, s), markup=False, highlight=False)
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
    p.add_argument("--model", default=None, help="also print each prompt as this model directory is given it "
                   "(its chat template, see --chat-template)")
    p.add_argument("--chat-template", default="auto", help="with --model: 'auto' (default), 'none' or a Jinja file")
    p.add_argument("--system-prompt", default=None, help="with --model: the system turn")
