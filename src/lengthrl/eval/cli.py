"""`lengthrl eval`: sample, verify, and print / save accuracy, pass@k and length metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.eval.records import load_eval
from lengthrl.eval.runner import run_eval
from lengthrl.tasks.base import Task


def parse_ks(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; a bad list raises ConfigError naming --k."""
    try:
        ks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConfigError(f"--k {text!r}: give comma-separated positive integers, e.g. --k 1,4,16") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k {text!r}: give comma-separated positive integers, e.g. --k 1,4,16")
    return ks


def parse_task_args(items: list[str] | None) -> dict[str, Any]:
    """['digits=3', 'name=x'] -> {'digits': 3, 'name': 'x'} (the task CLI's parser, errors naming --task-arg)."""
    from lengthrl.tasks.cli import parse_task_args as parse  # noqa: PLC0415

    return parse(items, flag="--task-arg")


def resolve_task(name: str | None, data: str | None, task_args: dict[str, Any] | None = None) -> Task:
    """`lengthrl.tasks.get_task(name, **task_args)`, or for a data file `get_task("data", path=data, **task_args)`
    whose test split is the whole file (unless task_args name test_path or test_fraction): `eval --data FILE`
    evaluates every row of FILE."""
    from lengthrl.tasks import get_task  # noqa: PLC0415

    if data is not None:
        task_args = dict(task_args or {})
        if "test_path" not in task_args and "test_fraction" not in task_args:
            task_args["test_path"] = data
        return get_task("data", path=data, **task_args)
    return get_task(name, **(task_args or {}))


def default_out(model: str) -> Path:
    """Where `eval` writes without --out: eval-<model directory name>.json in the current directory (never into
    the model's own directory)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).resolve().name) or "model"
    return Path(f"eval-{name}.json")


def sampling_params(args: argparse.Namespace) -> Any:
    """`lengthrl.rollout.SamplingParams` of the command line."""
    from lengthrl.rollout import SamplingParams  # noqa: PLC0415

    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                          seed=args.seed)


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """A two-column rich table of metrics."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)


@command("eval", examples=["lengthrl eval --model runs/luspo/final --task arith_chain --samples 16 --k 1,4,16 --out runs/luspo/eval16.json",
                   "lengthrl eval --model runs/luspo/final --data test.jsonl --baseline runs/base/eval.json",
                   "lengthrl eval --model runs/a/final runs/b/final --task arith_chain --prompts 100 --temperature 0 "
                   "--budgets 8,16,32,64 --out runs/budgets.json"])
def run(args: argparse.Namespace) -> int:
    """Run the `eval` subcommand (with --budgets: accuracy-vs-budget curves, see lengthrl.eval.budget)."""
    if args.budgets:
        return run_budget_curves(args)
    if len(args.model) > 1:
        raise ConfigError("--model: give one model, or several together with --budgets")
    args.model = args.model[0]
    ks = parse_ks(args.k)
    if ks[-1] > args.samples:
        raise ConfigError(f"--k {args.k}: each k must be <= --samples ({args.samples}); raise --samples or drop k")
    task = resolve_task(args.task, args.data, parse_task_args(args.task_arg))
    baseline = load_eval(args.baseline).metrics if args.baseline else None
    out = Path(args.out) if args.out else default_out(args.model)
    result = run_eval(args.model, task, args.samples, ks, sampling_params(args), n_prompts=args.prompts,
                      split=args.split, seed=args.seed, batch_prompts=args.batch_prompts, out=out,
                      baseline=baseline, progress=not args.no_progress, chat_template=args.chat_template,
                      system_prompt=args.system_prompt, max_prompt_length=args.max_prompt_length or None)
    metrics = {k: v for k, v in result.metrics.items() if v is not None}
    print_metrics(metrics, f"{result.model} on {result.task} ({args.samples} samples/prompt) -> {out}")
    return 0


@run.args
def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, nargs="+",
                   help="model directory (a run's saved policy); several with --budgets")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="registered task name (see `lengthrl tasks`)")
    src.add_argument("--data", help="JSONL/CSV/parquet file of prompts and answers; every row is evaluated")
    p.add_argument("--task-arg", action="append", metavar="KEY=VALUE", help="task option (repeatable)")
    p.add_argument("--samples", type=int, default=1, help="responses per prompt (n of pass@k), default 1")
    p.add_argument("--k", default="1", help="comma-separated k values for pass@k, each <= --samples (default 1)")
    p.add_argument("--prompts", type=int, default=None, help="number of prompts (default: the whole split)")
    p.add_argument("--split", default="test", help="task split, default test")
    p.add_argument("--seed", type=int, default=0, help="sampling and prompt-order seed (default 0)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="response budget in tokens (default 256)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, 0 = greedy (default 1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1.0 = off)")
    p.add_argument("--chat-template", default="auto",
                   help="'auto' (the tokenizer's chat template when it has one: [system], the task's prompt as the "
                   "user turn, then the generation prompt), 'none' (the prompt text as it is) or a Jinja file; "
                   "use what the model was trained with (default auto, as `lengthrl train`)")
    p.add_argument("--system-prompt", default=None, help="system turn of every prompt (needs a chat template)")
    p.add_argument("--max-prompt-length", type=int, default=0,
                   help="keep each prompt's last N tokens (default 0 = whole prompts)")
    p.add_argument("--batch-prompts", type=int, default=8, help="prompts per generate call (default 8)")
    p.add_argument("--baseline", default=None, help="eval JSON of the baseline model, for AES")
    p.add_argument("--out", default=None, help="eval JSON to write (default ./eval-<model dir name>.json)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--budgets", default=None, help="comma-separated reasoning budgets in tokens: cut each "
                   "response there, force the answer, and plot accuracy vs budget (e.g. 16,32,64)")
    p.add_argument("--answer-cue", default="\n<answer>",
                   help="text appended at the cut; a typed \\n is a newline (default '\\n<answer>')")
    p.add_argument("--answer-tokens", type=int, default=16, help="tokens the model may add after the cue (default 16)")


def run_budget_curves(args: argparse.Namespace) -> int:
    """`lengthrl eval --budgets ...`: accuracy vs budget for one or several models, as JSON + PNG + a table."""
    from lengthrl.eval.budget import knee, parse_budgets, run_budgets  # noqa: PLC0415

    budgets = parse_budgets(args.budgets)
    task = resolve_task(args.task, args.data, parse_task_args(args.task_arg))
    out = Path(args.out) if args.out else Path(args.model[0]) / "budgets.json"
    curves = run_budgets(args.model, task, budgets, sampling_params(args), out, n_prompts=args.prompts,
                         n_samples=args.samples, cue=args.answer_cue.replace("\\n", "\n"),
                         answer_tokens=args.answer_tokens, batch_prompts=args.batch_prompts, split=args.split,
                         seed=args.seed, progress=not args.no_progress, chat_template=args.chat_template,
                         system_prompt=args.system_prompt)
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"accuracy vs budget on {task.name} -> {out} and {out.with_suffix('.png')}")
    table.add_column("model")
    for b in budgets:
        table.add_column(f"B={b}", justify="right")
    table.add_column("knee", justify="right")
    for m, pts in curves.items():
        table.add_row(m, *[f"{p.acc:.3f} ({100 * p.forced_frac:.0f}% cut)" for p in pts], str(knee(pts)))
    Console().print(table)
    return 0
